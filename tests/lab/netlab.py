"""The namespace lab: real hosts (network namespaces), links, firewalls and servers for tests.

Every namespace, process and folder a test creates is registered with its `Lab` when created;
`Lab.teardown()` removes them all in reverse order, tolerating what is already gone, and runs
again at interpreter exit as a safety net. Nothing here touches the root namespace: veth pairs
are created directly inside their namespaces, and every name a lab host resolves goes to
127.0.0.1 (its own /etc/netns/NS/resolv.conf), so no query leaves it.

>>> lab = Lab()
>>> c, s = lab.pair()                      # 10.0.0.1 / fd00::1  <->  10.0.0.2 / fd00::2
>>> s.listen(8080)                         # doctest: +SKIP
>>> code, doc = c.json_of("probe", "10.0.0.2:8080")
>>> lab.teardown()
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

HERE = Path(__file__).resolve().parent
LISTENER = HERE / "listener.py"
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
CLONE_NEWNET = 0x40000000
IFNAME_MAX = 15

Cmd = str | Sequence[str]
T = TypeVar("T")


# namespaces created by live Labs of this process (two Labs must not share a host name)
_LIVE_NS: set[str] = set()
_LABS: list[Lab] = []  # labs not yet torn down, for the exit and signal safety nets
_LIVE_LOCK = threading.RLock()
_NETS_INSTALLED = False


class LabError(RuntimeError):
    """A lab step failed (a command, a daemon that never got ready)."""


def _argv(cmd: Cmd) -> list[str]:
    """A command as an argv list; a string runs through `sh -c`."""
    return ["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]


def _env(env: dict[str, str] | None) -> dict[str, str] | None:
    """The environment of the test run with `env` laid over it (None: inherit as is)."""
    if env is None:
        return None
    merged = dict(os.environ)
    merged.update(env)
    return merged


def _user_prefix(user: str | None) -> list[str]:
    """setpriv arguments that run a command as `user` with that user's primary group only."""
    if user is None:
        return []
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]


def _reachable_by_others(path: str) -> bool:
    """True when every folder above `path` lets any user through (o+x) and the file is o+x."""
    p = Path(os.path.realpath(path))
    for part in [p, *p.parents]:
        try:
            if not os.stat(part).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def python_for(user: str | None) -> tuple[str, dict[str, str]]:
    """The interpreter to run Python code as `user`, and the environment it needs.

    The test run's interpreter when that user can execute it; otherwise the system python3
    with this run's source and site-packages folders on PYTHONPATH (and PYTHONHOME pinned).
    """
    if user is None or _reachable_by_others(sys.executable):
        return sys.executable, {}
    system = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
    paths = [p for p in sys.path
             if p and os.path.isdir(p) and not p.startswith(sys.base_prefix) and _reachable_by_others(p)]
    return system, {"PYTHONPATH": os.pathsep.join(paths)}


def _python_home(exe: str) -> str:
    """PYTHONHOME for `exe`, so it finds its stdlib even when argv[0] is another program's name."""
    return sys.base_prefix if exe == sys.executable else "/usr"


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a short-lived thread that has joined network namespace `ns`.

    Sockets created by `fn` belong to that namespace: a fast way to poll a port from inside.
    """
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_RUN / ns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def connect_errno(address: str, port: int, timeout: float = 0.5) -> int:
    """Connect once to address:port from the calling thread's namespace; 0 or the errno."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            code = s.connect_ex((address, port))
        except socket.timeout:
            return errno.ETIMEDOUT
        except OSError as exc:
            return exc.errno or -1
    # connect_ex on a socket with a timeout reports the timeout as EAGAIN
    return errno.ETIMEDOUT if code in (errno.EAGAIN, errno.EINPROGRESS) else code


def _hex_address(text: str) -> str:
    """The address of a /proc/net/tcp{,6} field (32-bit words in host byte order)."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def _listen_addresses(port: int) -> list[str]:
    """LISTEN sockets on `port` in the calling thread's namespace (/proc/thread-self/net)."""
    found: list[str] = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/thread-self/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, _, hexport = fields[1].partition(":")
            if fields[3] == "0A" and int(hexport, 16) == port:
                found.append(_hex_address(addr))
    return found


def _connectable(address: str) -> str:
    """Where to connect to reach a socket bound to `address` (wildcards through loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)


class Host:
    """One lab host: a network namespace with its own /etc/netns files."""

    def __init__(self, lab: Lab, name: str, ns: str) -> None:
        self.lab = lab
        self.name = name
        self.ns = ns
        self.etc = NETNS_ETC / ns

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ns={self.ns!r})"

    # ------------------------------------------------------------------ commands

    def argv(self, cmd: Cmd, user: str | None = None) -> list[str]:
        """The full argv that runs `cmd` inside this namespace (as `user` if given)."""
        return ["ip", "netns", "exec", self.ns, *_user_prefix(user), *_argv(cmd)]

    def run(self, cmd: Cmd, check: bool = True, timeout: float = 30, env: dict[str, str] | None = None,
            user: str | None = None, input: str | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the namespace; return its captured output (text)."""
        argv = self.argv(cmd, user)
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                                env=_env(env), input=input, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{self.name}: timed out after {timeout} s: {' '.join(argv)}") from exc
        if check and cp.returncode != 0:
            raise LabError(f"{self.name}: exit {cp.returncode}: {' '.join(argv)}\n"
                           f"stdout: {cp.stdout.strip()}\nstderr: {cp.stderr.strip()}")
        return cp

    def popen(self, cmd: Cmd, env: dict[str, str] | None = None, user: str | None = None,
              **kw: Any) -> subprocess.Popen:
        """Start `cmd` inside the namespace in its own session; the lab kills it at teardown."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.argv(cmd, user), env=_env(env), **kw)
        self.lab._register("proc", proc)
        return proc

    # ------------------------------------------------------------------ configuration

    def add_addr(self, addr: str, dev: str = "lo") -> None:
        """Add an address (with prefix, e.g. 10.0.0.5/24 or fd00::5/64) to `dev`."""
        extra = ["nodad"] if ":" in addr else []
        self.run(["ip", "addr", "add", addr, "dev", dev, *extra])

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a sysctl of this namespace (net.* keys are per namespace)."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def iptables(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run iptables with `args` in this namespace."""
        return self.run(["iptables", "-w", *args])

    def ip6tables(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ip6tables with `args` in this namespace."""
        return self.run(["ip6tables", "-w", *args])

    def nft(self, ruleset: str) -> subprocess.CompletedProcess[str]:
        """Load an nftables ruleset (text, as for `nft -f`) in this namespace."""
        return self.run(["nft", "-f", "-"], input=ruleset)

    def write_etc(self, name: str, text: str) -> Path:
        """Write /etc/netns/NS/`name`; `ip netns exec` binds it over /etc/`name` for this host.

        The file must exist in /etc too (a bind mount needs a target).
        """
        path = self.etc / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def hosts(self, text: str) -> Path:
        """Give this host its own /etc/hosts, e.g. "127.0.0.1 localhost\\n::1 localhost\\n"."""
        return self.write_etc("hosts", text)

    # ------------------------------------------------------------------ probing from inside

    def connect_errno(self, address: str, port: int, timeout: float = 0.5) -> int:
        """Connect once from inside this namespace: 0 when accepted, else the errno."""
        return in_netns(self.ns, lambda: connect_errno(address, port, timeout))

    def listening(self, port: int) -> list[str]:
        """Addresses with a TCP socket in LISTEN state on `port` in this namespace."""
        return in_netns(self.ns, lambda: _listen_addresses(port))

    def wait_port(self, port: int, address: str | None = None, timeout: float = 15,
                  proc: subprocess.Popen | None = None) -> None:
        """Wait until `port` accepts a connection made inside this namespace.

        With no address, whatever listens on the port is tried (a wildcard through loopback).
        """
        deadline = time.monotonic() + timeout
        where = address or "any address"
        while True:
            candidates = [address] if address else [_connectable(a) for a in self.listening(port)]
            if any(self.connect_errno(a, port, 0.5) == 0 for a in candidates):
                return
            if proc is not None and proc.poll() is not None:
                raise LabError(f"{self.name}: process exited ({proc.returncode}) before {where}:{port} accepted")
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: {where}:{port} did not accept within {timeout} s")
            time.sleep(0.05)

    # ------------------------------------------------------------------ servers

    def listen(self, port: int, addr: str = "0.0.0.0", *, backlog: int = 128, accept: bool = True,
               close: bool = False, v6only: bool | None = None, env: dict[str, str] | None = None,
               argv0: str | None = None, nofile: int | None = None, fill_fds: bool = False,
               user: str | None = None, timeout: float = 10) -> subprocess.Popen:
        """Start tests/lab/listener.py here; return once it listens.

        argv0 names the process (/proc/PID/cmdline starts with it); env adds to its
        environment (/proc/PID/environ); close=True closes each accepted connection at once.
        """
        exe, py_env = python_for(user)
        args = [str(LISTENER), "--port", str(port), "--addr", addr, "--backlog", str(backlog)]
        if not accept:
            args.append("--no-accept")
        if close:
            args.append("--close")
        if v6only is not None:
            args += ["--v6only", "1" if v6only else "0"]
        if nofile is not None:
            args += ["--nofile", str(nofile)]
        if fill_fds:
            args.append("--fill-fds")
        full_env = {**py_env, **(env or {})}
        if argv0:
            full_env["PYTHONHOME"] = _python_home(exe)
            # bash's `exec -a` sets argv[0]; PYTHONHOME keeps the interpreter finding its stdlib
            cmd: list[str] = ["bash", "-c", 'exec -a "$0" "$@"', argv0, exe, *args]
        else:
            cmd = [exe, *args]
        proc = self.popen(cmd, env=full_env, user=user, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
        self._wait_ready(proc, timeout, f"listener {addr}:{port}")
        return proc

    def _wait_ready(self, proc: subprocess.Popen, timeout: float, what: str) -> None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            if proc.poll() is None:
                proc.kill()
            err = proc.stderr.read() if proc.stderr else ""
            raise LabError(f"{self.name}: {what} did not get ready: {line.strip()!r} {err.strip()}")

    def start(self, cmd: Cmd, ready_port: int | None = None, ready_file: str | Path | None = None,
              timeout: float = 15, env: dict[str, str] | None = None, user: str | None = None,
              ready_address: str | None = None, **kw: Any) -> subprocess.Popen:
        """Start a real daemon here (in the foreground); wait for its port or file; return it.

        Its stderr goes to a file the lab removes at teardown (a pipe nobody reads would fill
        and stall a chatty daemon); the file's tail is in the error when it never gets ready.
        """
        log: Path | None = None
        if "stderr" not in kw:
            fd, name = tempfile.mkstemp(prefix=f"{self.ns}-", suffix=".log")
            log = Path(name)
            self.lab._register("file", log)
            kw["stderr"] = fd
        try:
            proc = self.popen(cmd, env=env, user=user, **kw)
        finally:
            if log is not None:
                os.close(kw["stderr"])
        proc.log = log  # type: ignore[attr-defined]
        try:
            if ready_port is not None:
                self.wait_port(ready_port, ready_address, timeout, proc)
            if ready_file is not None:
                deadline = time.monotonic() + timeout
                while not Path(ready_file).exists():
                    if proc.poll() is not None:
                        raise LabError(f"{self.name}: {cmd} exited ({proc.returncode}) before {ready_file}")
                    if time.monotonic() > deadline:
                        raise LabError(f"{self.name}: {ready_file} did not appear within {timeout} s")
                    time.sleep(0.05)
        except LabError as exc:
            _stop(proc)
            tail = log.read_text(errors="replace")[-2000:].strip() if log is not None else ""
            raise LabError(f"{exc}\n{tail}".strip()) from None
        return proc

    def dns(self, records: dict[str, str]) -> subprocess.Popen:
        """Serve exactly `records` (name -> address, or "addr1,addr2") on 127.0.0.1:53 here.

        dnsmasq with no upstream, no /etc/hosts, no config file: any other name is NXDOMAIN.
        This host's resolv.conf already points at 127.0.0.1.
        """
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--no-poll", "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
                "--pid-file=", "--user=root", "--group=root", "--address=/#/"]
        for name, addrs in records.items():
            for addr in addrs.split(","):
                args.append(f"--address=/{name}/{addr.strip()}")
        return self.start(args, ready_port=53)

    # ------------------------------------------------------------------ portdoctor

    def portdoctor(self, *args: str, user: str | None = None, timeout: float = 60,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `python -m portdoctor ARGS` inside this namespace (never raises on exit code)."""
        exe, py_env = python_for(user)
        return self.run([exe, "-m", "portdoctor", *args], check=False, timeout=timeout,
                        env={**py_env, **(env or {})}, user=user, cwd="/" if user else None)

    def json_of(self, *args: str, user: str | None = None, timeout: float = 60) -> tuple[int, Any]:
        """Run portdoctor with --json added; return (exit code, parsed document)."""
        argv = list(args)
        at = argv.index("--") if "--" in argv else len(argv)  # `wait T -- CMD`: the flag is ours
        argv.insert(at, "--json")
        argv += _record_args(argv, user)
        cp = self.portdoctor(*argv, user=user, timeout=timeout)
        try:
            doc = json.loads(cp.stdout)
        except json.JSONDecodeError as exc:
            raise LabError(f"{self.name}: portdoctor {' '.join(args)} printed no JSON (exit {cp.returncode})\n"
                           f"stdout: {cp.stdout}\nstderr: {cp.stderr}") from exc
        return cp.returncode, doc


_recorded: dict[str, int] = {}


def _record_args(argv: list[str], user: str | None) -> list[str]:
    """With PD_RECORD_DIR set, a root `diagnose` also records its case for tests/unit replays."""
    record_dir = os.environ.get("PD_RECORD_DIR")
    if not record_dir or user is not None or not argv or argv[0] != "diagnose" or "--record" in argv:
        return []
    test = os.environ.get("PYTEST_CURRENT_TEST", "case")
    module = test.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py").removeprefix("test_")
    name = f"{module}--{test.split('::')[-1].split(' ')[0]}"
    _recorded[name] = _recorded.get(name, 0) + 1
    if _recorded[name] > 1:
        name += f"-{_recorded[name]}"
    return ["--record", str(Path(record_dir) / f"{name}.json")]


class Lab:
    """Registry of every namespace, process and folder a test created, torn down in reverse."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"pd{os.getpid()}"
        self.hosts: dict[str, Host] = {}
        self._items: list[tuple[str, Any]] = []
        self._links = 0
        self._lock = threading.RLock()
        with _LIVE_LOCK:
            _LABS.append(self)
        _install_safety_nets()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def _register(self, kind: str, obj: Any) -> None:
        with self._lock:
            self._items.append((kind, obj))

    # ------------------------------------------------------------------ building

    def host(self, name: str) -> Host:
        """Create namespace f"pd{pid}{name}" with lo up, its own resolv.conf and no IPv6 DAD."""
        if name in self.hosts:
            raise LabError(f"host {name!r} exists already")
        if not name or name[0].isdigit() or "/" in name:
            # pd<pid><name> must not read as another pid's namespace (pd12 + "3c" = pd123 + "c")
            raise LabError(f"host name {name!r} must not be empty, start with a digit or hold a '/'")
        ns = f"{self.prefix}{name}"
        with _LIVE_LOCK:
            if ns in _LIVE_NS:
                raise LabError(f"namespace {ns} belongs to another live Lab of this process: "
                               "use another host name")
            if (NETNS_RUN / ns).exists():  # left by a killed process that had our pid: start clean
                _delete_netns(ns)
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, text=True)
            _LIVE_NS.add(ns)
        self._register("ns", ns)
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        self._register("dir", etc)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        h = Host(self, name, ns)
        self.hosts[name] = h
        h.run(["ip", "link", "set", "lo", "up"])
        h.run(["sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad;"
                           " echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"])
        return h

    def link(self, a: Host, b: Host, a_addr: str | None = "10.0.0.1/24", b_addr: str | None = "10.0.0.2/24",
             a6: str | None = None, b6: str | None = None) -> tuple[str, str]:
        """Join a and b with a veth pair created inside them; return (a's ifname, b's ifname)."""
        with self._lock:
            n = self._links
            self._links += 1
        ia, ib = f"veth{2 * n}", f"veth{2 * n + 1}"
        assert len(ia) <= IFNAME_MAX and len(ib) <= IFNAME_MAX
        # distinct ifindexes: a veth whose ifindex equals its peer's (both 2 in fresh namespaces)
        # gets its carrier only after the kernel's 1 s linkwatch delay
        subprocess.run(["ip", "link", "add", ia, "index", str(100 + 2 * n), "netns", a.ns, "type", "veth",
                        "peer", "name", ib, "index", str(101 + 2 * n), "netns", b.ns],
                       check=True, capture_output=True, text=True)
        for host, dev, v4, v6 in ((a, ia, a_addr, a6), (b, ib, b_addr, b6)):
            host.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.accept_dad=0"])
            if v4:
                host.add_addr(v4, dev)
            if v6:
                host.add_addr(v6, dev)
            host.run(["ip", "link", "set", dev, "up"])
        return ia, ib

    def pair(self) -> tuple[Host, Host]:
        """Client "c" (10.0.0.1, fd00::1) and server "s" (10.0.0.2, fd00::2) on one veth link."""
        c, s = self.host("c"), self.host("s")
        self.link(c, s, "10.0.0.1/24", "10.0.0.2/24", "fd00::1/64", "fd00::2/64")
        self.wait_ipv6(c, s)
        return c, s

    def wait_ipv6(self, *hosts: Host, timeout: float = 10) -> None:
        """Wait until no address is tentative and every veth has carrier on `hosts`."""
        deadline = time.monotonic() + timeout
        for h in hosts:
            while True:
                tentative = h.run(["ip", "-6", "-o", "addr", "show", "tentative"]).stdout.strip()
                down = h.run(["ip", "-o", "link", "show", "type", "veth"]).stdout
                if not tentative and "LOWER_UP" in down and "NO-CARRIER" not in down:
                    break
                if time.monotonic() > deadline:
                    raise LabError(f"{h.name}: IPv6 addresses not usable within {timeout} s:\n{tentative}{down}")
                time.sleep(0.05)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Remove everything in reverse order of creation; tolerate what is already gone."""
        with self._lock:
            items, self._items = self._items, []
        for kind, obj in reversed(items):
            try:
                if kind == "proc":
                    _stop(obj)
                elif kind == "ns":
                    _delete_netns(obj)
                    with _LIVE_LOCK:
                        _LIVE_NS.discard(obj)
                elif kind == "dir":
                    shutil.rmtree(obj, ignore_errors=True)
                elif kind == "file":
                    Path(obj).unlink(missing_ok=True)
            except Exception as exc:  # keep going: the rest must go too
                print(f"netlab: teardown of {kind} {obj!r} failed: {exc}", file=sys.stderr)
        self.hosts.clear()
        with _LIVE_LOCK:
            if self in _LABS:
                _LABS.remove(self)


def leftovers(prefix: str | None = None) -> list[str]:
    """Namespaces and /etc/netns folders of this process (prefix pd<pid>) that still exist."""
    prefix = prefix or f"pd{os.getpid()}"
    found = {p.name for p in NETNS_RUN.glob(f"{prefix}*")} if NETNS_RUN.exists() else set()
    found |= {p.name for p in NETNS_ETC.glob(f"{prefix}*")} if NETNS_ETC.exists() else set()
    # pd123 must not match pd1234c, a namespace of process 1234
    return sorted(n for n in found if not n[len(prefix):][:1].isdigit())


def remove_leftovers(prefix: str | None = None) -> list[str]:
    """Delete what `leftovers` finds; return the names it removed."""
    names = leftovers(prefix)
    for name in names:
        _delete_netns(name)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    return names


def _teardown_all() -> None:
    """Tear down every Lab still alive in this process (newest first)."""
    with _LIVE_LOCK:
        labs = list(reversed(_LABS))
    for lab in labs:
        lab.teardown()


def _on_fatal_signal(signum: int, _frame: Any) -> None:
    """Clean up, then die of the same signal as if no handler had been there."""
    _teardown_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_safety_nets() -> None:
    """Once per process: teardown at interpreter exit, and on SIGTERM/SIGHUP if unhandled."""
    global _NETS_INSTALLED
    if _NETS_INSTALLED:
        return
    _NETS_INSTALLED = True
    atexit.register(_teardown_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _on_fatal_signal)


def _stop(proc: subprocess.Popen) -> None:
    """Kill a process started by Host.popen and its session (group); reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _delete_netns(ns: str) -> None:
    """Kill what still runs in namespace `ns` (it was all started by the lab), then delete it."""
    if not (NETNS_RUN / ns).exists():
        return
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 5
    while any(_running(int(p)) for p in pids if p.isdigit()) and time.monotonic() < deadline:
        time.sleep(0.01)
    subprocess.run(["ip", "netns", "delete", ns], capture_output=True, text=True)


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed process takes a moment to go)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
