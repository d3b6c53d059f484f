"""`diagnose TARGET --ssh [USER@]HOST`: the server's half of a diagnosis, taken on the server over SSH.

For each host: connect with asyncssh (keys and agent from the user's SSH setup, host key checked
against known_hosts, never a password), learn from the session's SSH_CONNECTION the address the
server sees this client at, take the snapshot there (an installed `portdoctor snapshot --json`, or
this package sent over the channel and run by the server's python3, see `sshboot`), then probe
from here and judge the snapshot locally (`diagnose.diagnose`), with `--from` set to that address.
Several hosts run concurrently, at most `jobs` at a time.

>>> parse_ssh_host("root@10.0.0.2")
SshHost(host='10.0.0.2', user='root', port=None)
>>> str(parse_ssh_host("deploy@[fd00::2]:2222"))
'deploy@[fd00::2]:2222'
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from portdoctor.addresses import endpoint
from portdoctor.errors import BadInput, ExitCode, Incomplete
from portdoctor.model import Target

if TYPE_CHECKING:
    import asyncssh

    from portdoctor.model import Diagnosis, ProbeResult
    from portdoctor.snapshot import Snapshot

DEFAULT_JOBS = 8
CONNECT_TIMEOUT = 10.0
CODE_MODES = ("auto", "send", "installed")
MIN_PYTHON = (3, 11)  # what the package sent to the server needs (pyproject's requires-python)

# Run by /bin/sh on the server (whatever the login shell is): what is there, one `key=value` a line.
# python3 is not started here (a pyenv shim alone takes 0.4 s): BOOT checks its own version.
DISCOVER = r"""printf 'conn=%s\n' "${SSH_CONNECTION:-}"
p=$(command -v portdoctor 2>/dev/null) && printf 'portdoctor=%s\n' "$p"
y=$(command -v python3 2>/dev/null) && printf 'python3=%s\n' "$y"
printf 'path=%s\n' "${PATH:-}"
exit 0"""

# Checks the Python version, reads the boot code (sshboot.py) from stdin and runs it; the package
# zip follows on stdin. One line in plain quotes: whatever the login shell, it arrives intact.
TOO_OLD = "portdoctor-ssh: too old: Python "
BOOT = (f'import sys;sys.version_info<{MIN_PYTHON!r} and sys.exit("{TOO_OLD}%d.%d"%sys.version_info[:2]);'
        'exec(compile(sys.stdin.buffer.read(int(sys.stdin.buffer.readline())),"portdoctor-ssh","exec"))')


@dataclass(frozen=True, slots=True)
class SshHost:
    """Where to log in: `[user@]host[:port]` (no user: the SSH config's or this user's name)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        where = (f"[{self.host}]" if ":" in self.host else self.host) + (f":{self.port}" if self.port else "")
        return f"{self.user}@{where}" if self.user else where


@dataclass(frozen=True, slots=True)
class SshOptions:
    """How to reach the hosts. Empty values mean the user's SSH setup (~/.ssh/config, the
    agent, ~/.ssh/id_*, ~/.ssh/known_hosts); `code` picks what runs on the server."""

    keys: tuple[str, ...] = ()
    known_hosts: str | None = None
    config: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    jobs: int = DEFAULT_JOBS
    code: str = "auto"


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """One host's answer: its diagnosis, or the one line saying why the server could not be seen."""

    ssh: SshHost
    target: Target
    diagnosis: Diagnosis | None = None
    error: str | None = None
    from_addr: str | None = None
    via: str | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        """0 the target accepts, 1 a problem was found, 3 the server could not be inspected."""
        if self.diagnosis is None:
            return ExitCode.INCOMPLETE
        return ExitCode.OK if self.diagnosis.verdict.cause.value == "ok" else ExitCode.PROBLEM

    def to_json(self) -> dict[str, Any]:
        """The diagnosis document (`portdoctor.diagnosis/1`) with an `ssh` object added; on
        failure only `target`, `ssh` and `error`."""
        ssh = {"host": str(self.ssh), "from": self.from_addr, "via": self.via, "error": self.error,
               "seconds": round(self.seconds, 3)}
        if self.diagnosis is None:
            return {"schema": "portdoctor.diagnosis/1", "target": self.target.to_json(), "ssh": ssh,
                    "error": self.error}
        return {**self.diagnosis.to_json(), "ssh": ssh}


class RemoteError(Incomplete):
    """The server's side could not be taken (SSH refused, host key unknown, no python3, ...)."""


def exit_code(results: Sequence[RemoteResult]) -> ExitCode:
    """1 when any host has a problem; else 3 when any host could not be inspected; else 0."""
    codes = {r.exit_code for r in results}
    for code in (ExitCode.PROBLEM, ExitCode.INCOMPLETE):
        if code in codes:
            return code
    return ExitCode.OK


# --------------------------------------------------------------------------- hosts


def parse_ssh_host(text: str) -> SshHost:
    """`[user@]host[:port]` or `[user@][v6addr][:port]` as an SshHost; BadInput when malformed."""
    raw = text.strip()
    user, at, rest = raw.rpartition("@")
    if not at:
        user, rest = "", raw
    if at and not user:
        raise BadInput(f"--ssh {text!r}: the user before '@' is empty")
    port: int | None = None
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            raise BadInput(f"--ssh {text!r}: expected [user@][v6addr]:port")
        port_text = tail[1:] if tail else ""
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""  # a bare IPv6 address has several colons and no port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadInput(f"--ssh {text!r}: the SSH port must be a number from 1 to 65535")
        port = int(port_text)
    if not host or any(c.isspace() or c in "/\\'\"`$;&|<>" for c in host) or host.startswith("-"):
        raise BadInput(f"--ssh {text!r}: not a host name or address")
    if any(c.isspace() or c in ":/\\'\"`$;&|<>" for c in user) or user.startswith("-"):
        raise BadInput(f"--ssh {text!r}: not a user name")
    return SshHost(host=host, user=user or None, port=port)


def read_inventory(path: str) -> list[SshHost]:
    """The hosts of an inventory file: one `[user@]host[:port]` a line; blank lines, `# comments`
    and `[group]` headers are skipped. BadInput names the file and line of a malformed entry."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the inventory {path}: {exc}") from None
    hosts = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text or (text.startswith("[") and text.endswith("]") and "]:" not in text and _is_group(text)):
            continue
        try:
            hosts.append(parse_ssh_host(text.split()[0]))
        except BadInput as exc:
            raise BadInput(f"{path}:{number}: {str(exc).removeprefix('--ssh ')}") from None
    if not hosts:
        raise BadInput(f"the inventory {path} names no host")
    return hosts


def _is_group(text: str) -> bool:
    """`[web]` is a group header; `[fd00::2]` is an address."""
    try:
        ipaddress.ip_address(text[1:-1])
    except ValueError:
        return True
    return False


# --------------------------------------------------------------------------- the run


def diagnose_over_ssh(target: Target, hosts: Sequence[SshHost], options: SshOptions = SshOptions(),
                      from_addr: str | None = None, service: str | None = None,
                      timeout: float = 3.0) -> list[RemoteResult]:
    """Diagnose `target` on each host, its facts taken there over SSH; results in the hosts' order.

    A TARGET without a host (`:5432`) means each SSH host itself, at the address SSH reached.
    `from_addr` overrides the client address each server reports. Raises RemoteError (exit 3)
    when asyncssh is missing; a host that cannot be inspected gets a result with `error`.
    """
    import asyncio

    try:
        import asyncssh  # noqa: F401  (lazy: only --ssh needs it)
    except ImportError:
        raise RemoteError("--ssh needs the asyncssh package: pip install 'asyncssh>=2.14'") from None
    if options.code not in CODE_MODES:
        raise BadInput(f"--ssh-code must be one of {', '.join(CODE_MODES)}")

    async def run_all() -> list[RemoteResult]:
        limit = asyncio.Semaphore(max(1, options.jobs))
        archive = package_archive() if options.code != "installed" else b""

        async def one(host: SshHost) -> RemoteResult:
            async with limit:
                return await _diagnose_host(target, host, options, archive, from_addr, service, timeout)

        return list(await asyncio.gather(*(one(h) for h in hosts)))

    return asyncio.run(run_all())


async def _diagnose_host(target: Target, host: SshHost, options: SshOptions, archive: bytes,
                         from_addr: str | None, service: str | None, timeout: float) -> RemoteResult:
    """Connect, take the snapshot there, then probe and judge here; errors become `error`."""
    import asyncio

    from portdoctor.diagnose import diagnose

    started = time.monotonic()
    shown = _target_for(target, host.host)  # until SSH says which address it reached
    try:
        async with await _connect(host, options) as conn:
            peer = _peer_address(conn)
            shown = _target_for(target, peer)
            facts = await _discover(conn)
            client = from_addr or _client_address(facts.get("conn", ""), conn)
            snap, via, probe = await _take_snapshot(conn, host, facts, options.code, archive, shown, client,
                                                    service, timeout)
        result = await asyncio.to_thread(diagnose, shown, from_addr=client, service=service, timeout=timeout,
                                         snapshot=snap, probe=probe)
        return RemoteResult(host, shown, result, None, client, via, time.monotonic() - started)
    except RemoteError as exc:
        return RemoteResult(host, shown, error=str(exc), seconds=time.monotonic() - started)
    except Exception as exc:  # asyncssh, OSError, timeouts: one line each (--debug: the traceback)
        logging.getLogger(__name__).debug("diagnose over SSH on %s failed", host, exc_info=True)
        return RemoteResult(host, shown, error=ssh_error_line(host, options, exc), seconds=time.monotonic() - started)


async def _connect(host: SshHost, options: SshOptions) -> asyncssh.SSHClientConnection:
    """Log in with keys only; the host key must be in known_hosts."""
    import asyncio

    import asyncssh

    kw: dict[str, Any] = {"password_auth": False, "kbdint_auth": False, "password": None,
                          "connect_timeout": options.connect_timeout}
    if host.port:
        kw["port"] = host.port
    if host.user:
        kw["username"] = host.user
    if options.known_hosts:
        kw["known_hosts"] = options.known_hosts  # never None: that would turn host key checking off
    if options.keys:
        kw["client_keys"] = list(options.keys)
    if options.config:
        kw["config"] = [options.config]
    try:
        return await asyncio.wait_for(asyncssh.connect(host.host, **kw), options.connect_timeout + 5)
    except asyncio.TimeoutError:
        raise RemoteError(f"{host}: no SSH answer within {options.connect_timeout:g} s") from None


def _peer_address(conn: asyncssh.SSHClientConnection) -> str:
    peer = conn.get_extra_info("peername")
    return _unmapped(str(peer[0])) if peer else ""


def _unmapped(address: str) -> str:
    """`::ffff:10.0.0.1` -> `10.0.0.1`; other addresses (zone ids dropped) as they are."""
    address = address.split("%")[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def _target_for(target: Target, peer: str) -> Target:
    """`:port` (this host) means the SSH host itself: its address as SSH reached it."""
    if target.is_this_host and peer:
        return replace(target, input=endpoint(peer, target.port), host=peer)
    return target


def _client_address(ssh_connection: str, conn: asyncssh.SSHClientConnection) -> str | None:
    """The address the server sees this client at: SSH_CONNECTION's first field there (right
    through NAT), else the local address of the SSH socket."""
    fields = ssh_connection.split()
    if len(fields) == 4:
        return _unmapped(fields[0])
    sock = conn.get_extra_info("sockname")
    return _unmapped(str(sock[0])) if sock else None


async def _discover(conn: asyncssh.SSHClientConnection) -> dict[str, str]:
    """What the server offers: SSH_CONNECTION, an installed portdoctor, python3, PATH."""
    done = await conn.run("/bin/sh -c " + shlex.quote(DISCOVER), check=False, timeout=30)
    out = done.stdout if isinstance(done.stdout, str) else ""
    facts: dict[str, str] = {}
    for line in out.splitlines():
        key, eq, value = line.partition("=")
        if eq and key in ("conn", "portdoctor", "python3", "path"):
            facts.setdefault(key, value.strip())
    if "path" not in facts:  # the script never ran: keep what the account said instead
        said = _last_line(out) or _last_line(done.stderr)
        if said:
            facts["said"] = said
        if done.exit_status not in (None, 0):
            facts["said"] = f"exit {done.exit_status}" + (f": {said}" if said else "")
    return facts


async def _take_snapshot(conn: asyncssh.SSHClientConnection, host: SshHost, facts: dict[str, str], code: str,
                         archive: bytes, target: Target, client: str | None, service: str | None,
                         timeout: float) -> tuple[Snapshot, str, ProbeResult | None]:
    """The server's snapshot, how it was taken, and the client's probe when it ran between the
    server's counter samples; RemoteError with one line when the snapshot cannot be taken."""
    import asyncio

    import asyncssh

    from portdoctor.probe import probe as run_probe
    from portdoctor.sshboot import READY

    installed, python = facts.get("portdoctor"), facts.get("python3")
    if "path" not in facts:
        raise RemoteError(f"{host}: logged in, but the account did not run commands with /bin/sh"
                          + (f" ({facts['said']})" if facts.get("said") else "")
                          + ": a restricted shell or a ForceCommand stands in the way")
    failed = ""
    if installed and code in ("auto", "installed"):
        argv = [installed, "snapshot", endpoint(target.host, target.port), "--json"]
        if client:
            argv += ["--from", client]
        if service:
            argv += ["--service", service]
        done = await conn.run(" ".join(shlex.quote(a) for a in argv), check=False, timeout=120)
        try:
            return _snapshot_of(done.stdout), f"installed {installed}", None
        except RemoteError as exc:
            failed = f"{installed} snapshot failed ({_last_line(done.stderr) or exc})"
            if code == "installed" or not python:
                raise RemoteError(f"{host}: {failed}") from None
    elif code == "installed":
        raise RemoteError(f"{host}: no portdoctor on the remote PATH ({facts.get('path', '?')}); "
                          "use --ssh-code send to send it")
    if not python:
        raise RemoteError(f"{host}: no python3 on the remote PATH ({facts.get('path') or 'empty'}): the server "
                          "side needs Python 3; install it there, or run `portdoctor snapshot` on the server "
                          "and use --snapshot FILE")
    boot = _boot_source()
    request = {"target": endpoint(target.host, target.port), "from_addr": client, "service": service,
               "timeout": timeout}
    arg = base64.b64encode(json.dumps(request).encode()).decode()
    payload = b"%d\n" % len(boot) + boot + b"%d\n" % len(archive) + archive
    proc = await conn.create_process(f"{shlex.quote(python)} -c {shlex.quote(BOOT)} {arg}", encoding=None)
    probe = None
    try:
        try:
            proc.stdin.write(payload)
        except (OSError, asyncssh.Error):
            pass  # it ended before reading (a Python too old): its stderr says why
        ready = b""
        for _ in range(200):  # a login script may print lines of its own first
            ready = await asyncio.wait_for(proc.stdout.readline(), 120)
            if not ready or ready.decode("utf-8", "replace").strip() == READY:
                break
        if ready.decode("utf-8", "replace").strip() == READY:
            probe = await asyncio.to_thread(run_probe, target, timeout=timeout)  # counters on both sides of it
        try:
            proc.stdin.write(b"probed\n")
            proc.stdin.write_eof()
        except (OSError, asyncssh.Error):
            pass
        stdout, stderr = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()), 120 + timeout)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        proc.close()
    said = _last_line(stderr.decode("utf-8", "replace"))
    if said.startswith(TOO_OLD):
        raise RemoteError(f"{host}: {python} is Python {said.removeprefix(TOO_OLD)}; the code portdoctor sends "
                          f"needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later: install portdoctor there, or run "
                          "`portdoctor snapshot` on the server and use --snapshot FILE")
    try:
        snap = _snapshot_of(stdout.decode("utf-8", "replace"))
    except RemoteError as exc:
        why = said or _last_line(ready.decode("utf-8", "replace")) or exc
        raise RemoteError(f"{host}: the snapshot sent to {python} failed: {why}") from None
    return snap, f"sent to {python}" + (f"; {failed}" if failed else ""), probe


def _snapshot_of(stdout: Any) -> Snapshot:
    """The Snapshot in a remote command's output; RemoteError when it holds none."""
    from portdoctor.snapshot import Snapshot

    text = stdout if isinstance(stdout, str) else ""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("{")]
    try:  # the document, after whatever a login script printed before it
        doc = json.loads("\n".join(lines[starts[0]:])) if starts else json.loads(text)
    except json.JSONDecodeError:
        raise RemoteError("it printed no JSON") from None
    try:
        return Snapshot.from_json(doc)
    except BadInput as exc:
        raise RemoteError(str(exc)) from None


def _last_line(text: Any) -> str:
    lines = [x.strip() for x in (text if isinstance(text, str) else "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def _boot_source() -> bytes:
    """The source of `portdoctor.sshboot`, the remote end."""
    return _package_file("sshboot.py")


def _package_file(name: str) -> bytes:
    from importlib.resources import files

    return files("portdoctor").joinpath(name).read_bytes()


def package_archive() -> bytes:
    """A zip of this portdoctor package's Python sources (what `sshboot` imports on the server)."""
    import io
    import zipfile
    from importlib.resources import files

    buf = io.BytesIO()
    root = files("portdoctor")
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        stack = [(root, "portdoctor")]
        while stack:
            folder, prefix = stack.pop()
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                if item.is_dir():
                    if item.name != "__pycache__":
                        stack.append((item, f"{prefix}/{item.name}"))
                elif item.name.endswith(".py"):
                    zf.writestr(f"{prefix}/{item.name}", item.read_bytes())
    return buf.getvalue()


# --------------------------------------------------------------------------- errors in words


def ssh_error_line(host: SshHost, options: SshOptions, exc: BaseException) -> str:
    """One line for the user about why `host` could not be inspected over SSH."""
    import socket

    try:
        import asyncssh
    except ImportError:  # pragma: no cover - checked before any connection
        return f"{host}: {exc}"
    known = options.known_hosts or "~/.ssh/known_hosts"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        port = f"-p {host.port} " if host.port else ""
        return (f"{host}: the server's host key is not trusted: it is not in {known}, or it differs from the "
                f"key recorded there. Check its fingerprint, then add it (ssh-keyscan {port}{host.host} >> {known}, "
                "or log in once with ssh)")
    if isinstance(exc, asyncssh.PermissionDenied):
        offered = ", ".join(options.keys) if options.keys else "the agent's and ~/.ssh's"
        return (f"{host}: authentication failed: the server accepted none of the keys offered ({offered}); "
                "portdoctor logs in with keys only, never a password")
    if isinstance(exc, asyncssh.KeyImportError):
        return (f"cannot use the SSH key: {exc} (an encrypted key must be loaded into ssh-agent with ssh-add)")
    if isinstance(exc, asyncssh.DisconnectError):
        return f"{host}: the SSH server closed the connection: {exc.reason}"
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"{host}: the SSH server refused a session: {exc.reason}"
    if isinstance(exc, socket.gaierror):
        return f"{host}: the name {host.host} does not resolve: {exc.strerror}"
    if isinstance(exc, (TimeoutError, asyncssh.ProcessError)) or type(exc).__name__ == "TimeoutError":
        return f"{host}: the server did not answer in time over SSH"
    if isinstance(exc, ConnectionRefusedError):
        return f"{host}: the SSH port {host.port or 22} refused the connection: no sshd listens there"
    if isinstance(exc, OSError):
        import os

        why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        return f"{host}: cannot reach the SSH port {host.port or 22}: {why}"
    return f"{host}: {type(exc).__name__}: {exc}"
