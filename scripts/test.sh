#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine, then run all tests.
# Run as root: the lab tests build network namespaces, veth pairs and firewall rules (inside
# namespaces only) and start real nginx, redis, postgres, haproxy, supervisord and podman there.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  python3 python3-venv iproute2 iptables nftables ipset procps util-linux
  socat rinetd openssh-server openssh-client systemd docker.io
  dnsmasq-base nginx-light haproxy redis-server postgresql mariadb-server supervisor
  podman runc netavark busybox-static caddy curl mmdebstrap gcc libc6-dev
  strace nodejs redis-tools postgresql-client lsof
  prometheus chromium chromium-driver openssh-server
  nmap ufw
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    # Packages must not start their daemons on this host: tests start their own, in namespaces.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  fi
elif [ "$(id -u)" != 0 ]; then
  echo "note: not root: system packages are not installed and lab tests will be skipped (or fail under CI=true)" >&2
fi

if [ "$(id -u)" = 0 ] && command -v mmdebstrap >/dev/null 2>&1; then
  # the Debian image with systemd as PID 1 that tests/lab/test_systemd_lab.py boots (built once, cached)
  bash scripts/systemd-image.sh >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
