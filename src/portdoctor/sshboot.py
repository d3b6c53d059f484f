"""The remote end of `diagnose --ssh`: run by the server's own python3, standard library only.

portdoctor does not need to be installed on the server. The client sends this file's source and
then a zip of its own portdoctor package over the SSH channel's standard input; this code
imports the package from that zip in memory (nothing is written to the server's disk), takes
the snapshot of the target (`diagnose.take_snapshot`, as `portdoctor snapshot` does) and prints
it as one JSON document (`portdoctor.snapshot/2`).

Standard input: a line with the zip's length in bytes, then the zip. The one argument is the
request, base64 of a JSON object: `target`, `from_addr`, `service`, `timeout`. Once the kernel
and firewall counters are sampled it prints READY and waits for one line on standard input: the
client probes in between, so the counters around the probe count the client's own packets.
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import sys
import types
import zipfile

ORIGIN = "<portdoctor-ssh>"
READY = "portdoctor-ssh: counters sampled, probe now"


class ZipPackageFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from an in-memory zip of package sources (`portdoctor/...py`)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.names = set(archive.namelist())
        self.archive = archive

    def _path(self, fullname: str) -> tuple[str, bool] | None:
        base = fullname.replace(".", "/")
        if f"{base}/__init__.py" in self.names:
            return f"{base}/__init__.py", True
        if f"{base}.py" in self.names:
            return f"{base}.py", False
        return None

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        """A spec for `fullname` when the zip holds it, else None (the normal importers go on)."""
        found = self._path(fullname)
        if found is None:
            return None
        name, is_package = found
        spec = importlib.util.spec_from_loader(fullname, self, origin=f"{ORIGIN}/{name}", is_package=is_package)
        if spec is not None:
            spec.has_location = False
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        """Default module creation."""
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Compile and run the module's source from the zip."""
        found = self._path(module.__name__)
        assert found is not None
        source = self.archive.read(found[0]).decode("utf-8")
        exec(compile(source, f"{ORIGIN}/{found[0]}", "exec"), module.__dict__)


def read_archive(stream: io.BufferedReader) -> zipfile.ZipFile:
    """The zip sent on `stream`: a length line, then that many bytes."""
    size = int(stream.readline().strip() or b"0")
    data = stream.read(size)
    if len(data) != size:
        raise SystemExit(f"portdoctor-ssh: the package archive was cut short ({len(data)} of {size} bytes)")
    return zipfile.ZipFile(io.BytesIO(data))


def handshake() -> None:
    """Say the counters are sampled, then wait until the client has probed (a line on stdin)."""
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()
    sys.stdin.buffer.readline()


def main(argv: list[str]) -> int:
    """Import the sent package, take the snapshot asked for in argv[0], print it as JSON."""
    request = json.loads(base64.b64decode(argv[0]).decode("utf-8"))
    sys.meta_path.insert(0, ZipPackageFinder(read_archive(sys.stdin.buffer)))
    from portdoctor.diagnose import take_snapshot
    from portdoctor.target import parse_target

    snap = take_snapshot(parse_target(request["target"]), from_addr=request.get("from_addr"),
                         service=request.get("service"), timeout=float(request.get("timeout") or 3.0),
                         between=handshake)
    sys.stdout.write(json.dumps(snap.to_json()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
