"""Where a TCP forwarder sends what it accepts, read from its own command line or configuration.

Pure text parsers, one per forwarder: socat's address arguments, ssh's -L/-R specifications,
docker-proxy's flags, `kubectl port-forward`, systemd-socket-proxyd (also under
systemd-socket-activate) and rinetd.conf lines. Each returns `Forward`s: the port the forwarder
listens on (when it says so) and the endpoint it connects to, with the words that say so.
Finding the processes and probing the backends is `portdoctor.collectors.forwarders`' job.

>>> socat(("socat", "TCP-LISTEN:8080,fork,reuseaddr", "TCP:127.0.0.1:9001"))[0].target
Endpoint(host='127.0.0.1', port=9001, unix=None, text='TCP:127.0.0.1:9001')
>>> [f.listen_port for f in ssh(("ssh", "-N", "-L", "8080:localhost:9001", "db.example"))]
[8080]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# program names (argv[0]'s base name or the kernel's comm) -> forwarder kind
PROGRAMS = {
    "socat": "socat",
    "ssh": "ssh",
    "docker-proxy": "docker-proxy",
    "kubectl": "kubectl",
    "systemd-socket-proxyd": "systemd-socket-proxyd",
    "systemd-socket-activate": "systemd-socket-activate",
    "rinetd": "rinetd",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a forwarder connects: host (a name or a literal) and port, or a unix socket path."""

    host: str
    port: int | None
    unix: str | None = None
    text: str = ""  # the argument or line that names it


@dataclass(frozen=True, slots=True)
class Forward:
    """One forwarding a forwarder does: what it listens on and where it connects.

    `direction` is "local" when the connection to `target` starts on the forwarder's side
    (socat, ssh -L's sshd end aside), "remote-end" when the far end of a tunnel makes it (ssh -L:
    the ssh server connects), "client-end" for ssh -R (the ssh client connects, the server
    listens), "cluster" for kubectl (the pod's namespace connects).
    """

    kind: str
    listen_port: int | None
    listen_address: str | None
    target: Endpoint
    text: str  # the argument(s) saying so, as written
    direction: str = "local"
    via: str | None = None  # ssh destination "user@host:port", kubectl "pod/web -n shop"
    via_host: str | None = None  # ssh: the server's host
    via_port: int | None = None  # ssh: the server's port
    file: str | None = None  # a configuration file (rinetd), None for the command line
    line: int | None = None


def program_kind(argv: tuple[str, ...] | list[str], comm: str | None) -> str | None:
    """The forwarder kind of a process, from argv[0] or its kernel name; None for other programs."""
    first = os.path.basename(argv[0]) if argv else ""
    return PROGRAMS.get(first) or PROGRAMS.get(comm or "")


def _port(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def split_host_port(text: str) -> tuple[str, int | None]:
    """'host:port', '[v6]:port' -> (host, port); port None when missing or not a number.

    >>> split_host_port("[::1]:9001")
    ('::1', 9001)
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _port(rest[1:]) if rest.startswith(":") else None
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    return host.strip("[]"), _port(port)


# --------------------------------------------------------------------------- socat

# option letters of socat that take a separate value (socat 1.7: -b SIZE, -t/-T SECONDS, -lf FILE, ...)
_SOCAT_VALUE_OPTS = {"-b", "-t", "-T", "-lf", "-lp", "-L", "-W", "-r", "-R"}
_SOCAT_LISTEN = re.compile(r"^(TCP[46]?-(?:LISTEN|L)):([^,]*)(,.*)?$", re.IGNORECASE)
_SOCAT_CONNECT = re.compile(r"^(TCP[46]?(?:-CONNECT)?|OPENSSL(?:-CONNECT)?|SSL):(.*)$", re.IGNORECASE)
_SOCAT_UNIX = re.compile(r"^(UNIX-CONNECT|UNIX-CLIENT|UNIX|LOCAL):([^,]*)(,.*)?$", re.IGNORECASE)


def _socat_addresses(argv: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a.startswith("-") and len(a) > 1 and not out:
            skip = a in _SOCAT_VALUE_OPTS
            continue
        out.append(a)
    return out


def _socat_options(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for opt in text.split(","):
        if opt:
            key, _, value = opt.partition("=")
            out[key.strip().lower()] = value.strip()
    return out


def socat(argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """socat's listening address and the TCP (or unix) address it connects each client to.

    >>> socat(("socat", "-d", "-d", "TCP6-LISTEN:8443,bind=[::1],fork", "TCP6:[fd00::5]:443,connect-timeout=2"))[0]
    ... # doctest: +NORMALIZE_WHITESPACE
    Forward(kind='socat', listen_port=8443, listen_address='::1',
            target=Endpoint(host='fd00::5', port=443, unix=None, text='TCP6:[fd00::5]:443,connect-timeout=2'),
            text='TCP6-LISTEN:8443,bind=[::1],fork TCP6:[fd00::5]:443,connect-timeout=2', direction='local',
            via=None, via_host=None, via_port=None, file=None, line=None)
    """
    addrs = _socat_addresses(argv)
    if len(addrs) != 2:
        return []
    for lst, other in ((addrs[0], addrs[1]), (addrs[1], addrs[0])):
        m = _SOCAT_LISTEN.match(lst)
        if not m:
            continue
        opts = _socat_options(m.group(3) or "")
        bind = opts.get("bind")
        bind = bind.strip("[]") if bind else None
        target = _socat_target(other)
        if target is None:
            return []
        return [Forward("socat", _port(m.group(2)), bind, target, f"{lst} {other}")]
    return []


def _socat_target(text: str) -> Endpoint | None:
    m = _SOCAT_UNIX.match(text)
    if m:
        return Endpoint("", None, unix=m.group(2), text=text)
    m = _SOCAT_CONNECT.match(text)
    if not m:
        return None
    rest = m.group(2)
    if rest.startswith("["):  # TCP6:[::1]:443,opts
        close = rest.find("]")
        head, opts = rest[:close + 1], rest[close + 1:]
        hostport = head + opts.split(",", 1)[0]
    else:
        hostport = rest.split(",", 1)[0]
    host, port = split_host_port(hostport)
    return Endpoint(host, port, text=text)


# --------------------------------------------------------------------------- ssh

# ssh(1) option letters that take a value (OpenSSH 9)
_SSH_VALUE = set("BbcDEeFIiJLlmOoPpQRSWw")
_SSH_FLAGS = set("46AaCfGgKkMNnqsTtVvXxYy")


def _ssh_words(argv: tuple[str, ...] | list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(option letter, value) pairs and the positional words of an ssh command line."""
    opts: list[tuple[str, str]] = []
    rest: list[str] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i + 1:])
            break
        if not a.startswith("-") or a == "-" or rest:
            rest.append(a)
            i += 1
            continue
        j = 1
        while j < len(a):
            ch = a[j]
            if ch in _SSH_VALUE:
                value = a[j + 1:]
                if not value and i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                opts.append((ch, value))
                break
            opts.append((ch, ""))
            j += 1
        i += 1
    return opts, rest


def _ssh_fields(spec: str) -> list[str]:
    """Split a forward spec on ':' (or on '/', ssh's other separator), keeping [IPv6] whole."""
    for sep in (":", "/"):
        out, cur, depth = [], "", 0
        for ch in spec:
            depth += (ch == "[") - (ch == "]")
            if ch == sep and depth == 0:
                out.append(cur)
                cur = ""
            else:
                cur += ch
        out.append(cur)
        if len(out) > 1:
            return [f.strip("[]") for f in out]
    return [spec]


def ssh_forward_spec(spec: str) -> tuple[str | None, int | None, Endpoint] | None:
    """'[bind:]port:host:hostport' (or a socket path on either side) -> (bind, port, target).

    >>> ssh_forward_spec("127.0.0.1:8080:[::1]:9001")
    ('127.0.0.1', 8080, Endpoint(host='::1', port=9001, unix=None, text='127.0.0.1:8080:[::1]:9001'))
    >>> ssh_forward_spec("8080:/run/app.sock")
    (None, 8080, Endpoint(host='', port=None, unix='/run/app.sock', text='8080:/run/app.sock'))
    """
    spec = spec.strip()
    if ":" in spec and spec.rsplit(":", 1)[1].startswith("/"):  # [bind:]port:/remote/socket
        head, _, path = spec.rpartition(":")
        f = _ssh_fields(head)
        bind, port = (f[0], _port(f[1])) if len(f) == 2 else (None, _port(f[0]))
        return bind or None, port, Endpoint("", None, unix=path, text=spec)
    f = _ssh_fields(spec)
    if len(f) == 4:
        bind, port, host, hport = f
    elif len(f) == 3:
        bind, (port, host, hport) = None, f
    else:
        return None
    if port.startswith("/"):  # a local unix socket forwarded: no TCP port here
        return None
    return (bind or None), _port(port), Endpoint(host, _port(hport), text=spec)


def ssh(argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """The -L and -R forwardings of an ssh client command line, with the server it goes through.

    -o LocalForward / RemoteForward are read too; a forwarding in an ssh_config file is not.
    """
    opts, rest = _ssh_words(argv)
    dest = rest[0] if rest else None
    user = next((v for k, v in opts if k == "l"), None)
    port = next((_port(v) for k, v in opts if k == "p"), None)
    host = None
    if dest:
        d = dest.removeprefix("ssh://")
        if "@" in d:
            user, d = d.rsplit("@", 1)
        if dest.startswith("ssh://") and (d.startswith("[") or d.count(":") == 1):
            d, p = split_host_port(d)
            port = p or port
        host = d.strip("[]")
    via = (f"{user}@" if user else "") + (host or "?") + f":{port or 22}"
    out: list[Forward] = []
    specs: list[tuple[str, str]] = [(k, v) for k, v in opts if k in ("L", "R")]
    for k, v in opts:
        if k == "o":
            key, _, value = v.replace("=", " ", 1).partition(" ")
            if key.lower() in ("localforward", "remoteforward"):
                words = value.split()
                if len(words) == 2:
                    specs.append(("L" if key.lower() == "localforward" else "R", f"{words[0]}:{words[1]}"))
    for k, v in specs:
        parsed = ssh_forward_spec(v)
        if parsed is None:
            continue
        bind, lport, target = parsed
        out.append(Forward("ssh", lport, bind, target, f"-{k} {v}",
                           direction="remote-end" if k == "L" else "client-end",
                           via=via, via_host=host, via_port=port or 22))
    return out


# --------------------------------------------------------------------------- docker-proxy


def _go_flag(argv: tuple[str, ...] | list[str], name: str) -> str | None:
    """The value of a Go-style flag (-name v, --name v, -name=v)."""
    for i, a in enumerate(argv):
        for f in (f"-{name}", f"--{name}"):
            if a == f and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(f + "="):
                return a.split("=", 1)[1]
    return None


def docker_proxy(argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """docker-proxy -proto tcp -host-ip H -host-port P -container-ip C -container-port Q."""
    if (_go_flag(argv, "proto") or "tcp") != "tcp":
        return []
    cip, cport = _go_flag(argv, "container-ip"), _port(_go_flag(argv, "container-port") or "")
    if not cip:
        return []
    hip, hport = _go_flag(argv, "host-ip"), _port(_go_flag(argv, "host-port") or "")
    text = f"-host-ip {hip} -host-port {hport} -container-ip {cip} -container-port {cport}"
    return [Forward("docker-proxy", hport, hip, Endpoint(cip, cport, text=f"{cip}:{cport}"), text)]


# --------------------------------------------------------------------------- kubectl

_KUBECTL_VALUE = {"-n", "--namespace", "--context", "--kubeconfig", "--cluster", "--user", "-s", "--server",
                  "--address", "--pod-running-timeout", "--request-timeout", "-v", "--token", "--as",
                  "--as-group", "--certificate-authority", "--client-certificate", "--client-key",
                  "--tls-server-name", "--cache-dir", "--profile", "--profile-output"}


def kubectl(argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """`kubectl port-forward [-n NS] [--address A] TYPE/NAME [LOCAL:]REMOTE ...`: one Forward per port.

    The target is the resource and its port: the connection is made from the pod's network
    namespace, to the app's port there (the API server carries it)."""
    words: list[str] = []
    ns, address = None, None
    i = 1
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if a.startswith("-"):
            if not eq and a in _KUBECTL_VALUE and i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            if name in ("-n", "--namespace"):
                ns = value
            elif name == "--address":
                address = value.split(",")[0]
        else:
            words.append(a)
        i += 1
    if not words or words[0] != "port-forward" or len(words) < 3:
        return []
    resource = words[1] if "/" in words[1] else f"pod/{words[1]}"
    via = resource + (f" -n {ns}" if ns else "")
    out: list[Forward] = []
    for spec in words[2:]:
        local, _, remote = spec.rpartition(":")
        lport, rport = _port(local or remote), _port(remote)
        if rport is None:
            continue
        out.append(Forward("kubectl", lport, address, Endpoint(resource, rport, text=spec),
                           f"port-forward {resource} {spec}", direction="cluster", via=via))
    return out


# --------------------------------------------------------------------------- systemd-socket-proxyd


def systemd_socket_proxyd(argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """`systemd-socket-proxyd [--connections-max=N] [--exit-idle-time=T] HOST:PORT|PATH`; its
    listening socket is handed over by systemd (a .socket unit) or systemd-socket-activate."""
    words: list[str] = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a in ("-c", "--connections-max", "--exit-idle-time"):
            skip = True
        elif not a.startswith("-"):
            words.append(a)
    if len(words) != 1:
        return []
    w = words[0]
    target = Endpoint("", None, unix=w, text=w) if w.startswith("/") or w.startswith("@") else \
        Endpoint(*split_host_port(w), text=w)
    return [Forward("systemd-socket-proxyd", None, None, target, w)]


def systemd_socket_activate(argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """`systemd-socket-activate -l [ADDR:]PORT ... systemd-socket-proxyd TARGET`: the socket it holds
    until the first connection, and the proxy it then starts."""
    listen: list[str] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-l", "--listen") and i + 1 < len(argv):
            listen.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--listen="):
            listen.append(a.split("=", 1)[1])
        elif a in ("-E", "--setenv", "--fdname") and i + 1 < len(argv):
            i += 1
        elif not a.startswith("-"):
            break
        i += 1
    cmd = argv[i:]
    if not cmd or os.path.basename(cmd[0]) != "systemd-socket-proxyd":
        return []
    inner = systemd_socket_proxyd(cmd)
    out: list[Forward] = []
    for spec in listen or [""]:
        host, port = split_host_port(spec) if ":" in spec else ("", _port(spec))
        for f in inner:
            out.append(Forward("systemd-socket-proxyd", port, host or None, f.target,
                               f"-l {spec} {' '.join(cmd)}"))
    return out


# --------------------------------------------------------------------------- rinetd


def rinetd_conf(text: str, path: str) -> list[Forward]:
    """The forwarding rules of rinetd.conf: `bindaddress bindport connectaddress connectport [opts]`.

    >>> rinetd_conf("# comment\\nlogfile /var/log/rinetd.log\\n0.0.0.0 8080 127.0.0.1 9001\\n", "r.conf")[0].line
    3
    """
    out: list[Forward] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if len(words) < 4 or words[0].lower() in ("allow", "deny", "logfile", "pidlogfile", "logcommon",
                                                    "include"):
            continue
        bport, _, bproto = words[1].partition("/")
        cport, _, cproto = words[3].partition("/")
        if (bproto or "tcp").lower() != "tcp" or (cproto or "tcp").lower() != "tcp":
            continue
        if _port(bport) is None:
            continue
        out.append(Forward("rinetd", _port(bport), words[0].strip("[]"),
                           Endpoint(words[2].strip("[]"), _port(cport), text=line), line, file=path, line=n))
    return out


def rinetd_config_path(argv: tuple[str, ...] | list[str]) -> str:
    """The configuration file rinetd reads: -c FILE / --conf-file FILE, else /etc/rinetd.conf."""
    for i, a in enumerate(argv):
        if a in ("-c", "--conf-file") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--conf-file="):
            return a.split("=", 1)[1]
    return "/etc/rinetd.conf"


def parse_command(kind: str, argv: tuple[str, ...] | list[str]) -> list[Forward]:
    """The forwardings a command line of `kind` names (rinetd: none, they are in its file)."""
    fn = {"socat": socat, "ssh": ssh, "docker-proxy": docker_proxy, "kubectl": kubectl,
          "systemd-socket-proxyd": systemd_socket_proxyd,
          "systemd-socket-activate": systemd_socket_activate}.get(kind)
    return fn(argv) if fn else []
