#!/usr/bin/env bash
# Build (once, then cached) the minimal Debian root filesystem with systemd that
# tests/lab/test_systemd_lab.py boots in a Podman container, and import it as a local image.
# Run by scripts/test.sh as root during the install phase, so no test downloads anything.
# The build fetches Debian packages with mmdebstrap (about 60 MB, under a minute); the tar is kept
# in /var/cache/portdoctor-tests, keyed by the package list, and reused by later runs.
set -euo pipefail

PACKAGES="systemd,systemd-sysv,dbus,python3,python3-click,python3-rich,python3-psutil,python3-dnspython,procps"
SUITE="${SUITE:-bookworm}"
key=$(printf '%s %s' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
image="localhost/portdoctor-systemd:$key"
cache="/var/cache/portdoctor-tests"
tarball="$cache/debian-systemd-$key.tar"
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' > "$conf"
export CONTAINERS_CONF="$conf"

if [ "${1:-}" = "--name" ]; then  # the image the tests look for (nothing is built)
  echo "$image"
  exit 0
fi
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  rm -rf "$tarball.part"
  mmdebstrap --quiet --format=tar --variant=minbase --include="$PACKAGES" "$SUITE" "$tarball.part" >&2
  mv "$tarball.part" "$tarball"
fi
podman import --quiet "$tarball" "$image" >/dev/null
echo "$image"
