"""What supervisors know about services: supervisord programs and systemd units.

Snapshot.supervisors (SupervisorFacts) is built from this plain form = {
  "supervisord": [{"pid", "config", "socket", "error", "logfile", "programs": [{"name", "group", "state", "events" (main log lines),
                   "exitstatus", "spawnerr", "description", "pid", "start", "stop", "command",
                   "autostart", "autorestart", "startretries", "stdout_logfile", "stderr_logfile",
                   "log": [...]}]}],
  "systemd": {"units": [{"id", "active_state", "sub_state", "result", "n_restarts",
                         "exec_main_status", "exec_main_code", "unit_file_state", "exec_start",
                         "journal": [...]}]}     # only when systemd is PID 1
}
Only gathering: checks/supervisor.py decides. Files come through the Host under its rule for
files another user's process named (supervisord's config from its command line, the logs that
config names); commands and environments in them are redacted.
"""

from __future__ import annotations

import configparser
import http.client
import posixpath
import socket
import xmlrpc.client
from typing import Any

from portdoctor import redact
from portdoctor.collectors import Facts, Request
from portdoctor.collectors import procfs
from portdoctor.collectors.procfs import netns_inode
from portdoctor.host import Host, LocalHost
from portdoctor.hostfacts import SupervisorFacts
from portdoctor.model import Limitation
from portdoctor.plain import from_plain

LOG_LINES = 10
DEFAULT_CONFIGS = ("/etc/supervisor/supervisord.conf", "/etc/supervisord.conf")
SYSTEMD_PROPS = ("Id", "ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus", "ExecMainCode",
                 "UnitFileState", "ExecStart", "MainPID", "Listen", "Triggers", "TriggeredBy")


# --------------------------------------------------------------------------- supervisord


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float, host: Host) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path, self._host = path, host

    def connect(self) -> None:
        self.sock = self._host.connect(socket.AF_UNIX, self._path, self.timeout)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float = 5, host: Host | None = None) -> None:
        super().__init__()
        self._path, self._timeout, self._host = path, timeout, host or LocalHost()

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout, self._host)


class Files:
    """Reads the files a supervisord names for it: its config under the owner rule, its logs
    as its user could (Host.readable_for); what was refused is kept in `refused`."""

    def __init__(self, host: Host, uid: int | None, checked: bool = True) -> None:
        self.host, self.uid, self.checked = host, uid, checked
        self.refused: list[tuple[str, str]] = []

    def text(self, path: str, owner_rule: bool = True) -> str | None:
        """The file's text, None when missing, unreadable or refused."""
        if self.checked:
            ok, why = self.host.readable_for(path, self.uid, owner_rule)
            if not ok:
                if (path, why) not in self.refused:
                    self.refused.append((path, why))
                return None
        try:
            return self.host.read_text(path)
        except OSError:
            return None

    def tail(self, path: str, size: int) -> bytes | None:
        """The last bytes of a log the (vetted) config names, None as for `text`."""
        if self.checked:
            ok, why = self.host.readable_for(path, self.uid, owner_rule=False)
            if not ok:
                if (path, why) not in self.refused:
                    self.refused.append((path, why))
                return None
        try:
            return self.host.read_tail(path, size)
        except OSError:
            return None


def read_config(path: str, files: Files) -> tuple[configparser.RawConfigParser, list[str]]:
    """supervisord.conf plus its [include] files (parsed like supervisord: ';' starts a comment)."""
    cp = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    read: list[str] = []

    def add(name: str) -> None:
        text = files.text(name)
        if text is not None:
            cp.read_string(text, source=name)
            read.append(name)

    add(path)
    here = posixpath.dirname(posixpath.normpath(path))
    if cp.has_option("include", "files"):
        for pattern in cp.get("include", "files").split():
            pattern = pattern.replace("%(here)s", here)
            if not posixpath.isabs(pattern):
                pattern = posixpath.join(here, pattern)
            for name in files.host.glob(pattern):
                add(name)
    return cp, read


def _expand(value: str, here: str, name: str) -> str:
    return value.replace("%(here)s", here).replace("%(program_name)s", name).replace("%(process_num)d", "0") \
        .replace("%(process_num)02d", "00")


def _tail(files: Files, path: str | None, n: int = LOG_LINES) -> list[str]:
    if not path or path in ("AUTO", "NONE", "/dev/stdout", "/dev/stderr") or path.startswith("syslog"):
        return []
    data = files.tail(path, 16384)
    if data is None:
        return []
    lines = data.decode(errors="replace").splitlines()
    return [ln for ln in lines if ln.strip()][-n:]


def find_supervisord(host: Host) -> list[tuple[int, str | None]]:
    """(pid, config path or None) of each supervisord in this network namespace."""
    own = netns_inode(host, "self")
    out = []
    for pid in procfs.pids(host):
        argv = procfs.read_cmdline(host, pid)
        comm = procfs.read_comm(host, pid) or ""
        if comm != "supervisord" and not any(posixpath.basename(a) == "supervisord" for a in argv[:2]):
            continue
        if netns_inode(host, pid) != own:
            continue
        conf = None
        for i, a in enumerate(argv):
            if a in ("-c", "--configuration") and i + 1 < len(argv):
                conf = argv[i + 1]
            elif a.startswith("--configuration="):
                conf = a.split("=", 1)[1]
        if conf and not posixpath.isabs(conf):
            conf = posixpath.join(procfs.read_cwd(host, pid) or "/", conf)
        out.append((pid, conf or next((p for p in DEFAULT_CONFIGS if host.exists(p)), None)))
    return out


def supervisord_facts(pid: int, conf: str | None, host: Host | None = None,
                      files: Files | None = None) -> dict[str, Any]:
    """Programs of one supervisord: state from its XML-RPC interface, settings from its config."""
    host = host or LocalHost()
    files = files or Files(host, procfs.read_uid(host, pid))
    entry: dict[str, Any] = {"pid": pid, "config": conf, "socket": None, "error": None, "programs": []}
    cp: configparser.RawConfigParser | None = None
    here = posixpath.dirname(conf) if conf else "/"
    if conf:
        try:
            cp, _files = read_config(conf, files)
        except configparser.Error as exc:
            entry["error"] = f"cannot parse {conf}: {exc}"
    if cp is not None and cp.has_option("unix_http_server", "file"):
        entry["socket"] = _expand(cp.get("unix_http_server", "file"), here, "")
    mainlog = None
    if cp is not None and cp.has_option("supervisord", "logfile"):
        mainlog = _expand(cp.get("supervisord", "logfile"), here, "")
    entry["logfile"] = mainlog
    events = _tail(files, mainlog, 400) if mainlog else []
    programs: dict[str, dict[str, Any]] = {}
    if cp is not None:
        for sec in cp.sections():
            if sec.startswith("program:"):
                name = sec.split(":", 1)[1]
                get = lambda k, d=None: cp.get(sec, k) if cp.has_option(sec, k) else d  # noqa: E731
                command = get("command")
                programs[name] = {"command": redact.command(command) if command else command,
                                  "autostart": get("autostart", "true"),
                                  "autorestart": get("autorestart", "unexpected"),
                                  "startretries": get("startretries", "3"),
                                  "section_file": None}
    info: list[dict[str, Any]] = []
    if entry["socket"]:
        try:
            proxy = xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(entry["socket"], host=host))
            info = proxy.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error) as exc:
            entry["error"] = f"supervisord at {entry['socket']} did not answer: {exc}"
    for p in info:
        name = p.get("name", "")
        rec = {"name": name, "group": p.get("group"), "state": p.get("statename"),
               "exitstatus": p.get("exitstatus"), "spawnerr": p.get("spawnerr") or None,
               "description": p.get("description"), "pid": p.get("pid") or None,
               "start": p.get("start"), "stop": p.get("stop"),
               "stdout_logfile": p.get("stdout_logfile") or None, "stderr_logfile": p.get("stderr_logfile") or None,
               **programs.get(name, {"command": None, "autostart": None, "autorestart": None, "startretries": None}),
               "log": []}
        rec.pop("section_file", None)
        # supervisord keeps no exit status for a start that failed too quickly; its log has it
        rec["events"] = [ln for ln in events if f": {name} " in ln or f": {name}\n" in ln
                         or ln.rstrip().endswith(f": {name}")][-6:]
        rec["log_file"] = None
        if rec["state"] != "RUNNING":
            for key in ("stderr_logfile", "stdout_logfile"):
                rec["log"] = _tail(files, rec[key])
                if rec["log"]:
                    rec["log_file"] = rec[key]
                    break
        entry["programs"].append(rec)
    if not info:  # no RPC answer: at least what the config says
        for name, prog in programs.items():
            entry["programs"].append({"name": name, "group": name, "state": None, "exitstatus": None,
                                      "spawnerr": None, "description": None, "pid": None, "start": None,
                                      "stop": None, "stdout_logfile": None, "stderr_logfile": None,
                                      **{k: v for k, v in prog.items() if k != "section_file"}, "log": []})
    return entry


# --------------------------------------------------------------------------- systemd


def parse_systemctl_show(text: str) -> list[dict[str, str]]:
    """`systemctl show -p ... UNIT...` output (blank-line separated blocks) -> dicts."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
                cur = {}
            continue
        key, _, value = line.partition("=")
        # a list property (a socket unit's Listen=) comes as one line per item
        cur[key] = f"{cur[key]}\n{value}" if key in cur and key == "Listen" else value
    if cur:
        out.append(cur)
    return out


def _unit_record(props: dict[str, str]) -> dict[str, Any]:
    def num(k: str) -> int | None:
        v = props.get(k, "")
        return int(v) if v.lstrip("-").isdigit() else None

    exec_start = props.get("ExecStart", "")
    if "argv[]=" in exec_start:  # "{ path=/usr/bin/x ; argv[]=/usr/bin/x --port 1 ; ... }"
        exec_start = exec_start.split("argv[]=", 1)[1].split(" ;", 1)[0]
    exec_start = redact.command(exec_start)
    return {"id": props.get("Id"), "active_state": props.get("ActiveState"), "sub_state": props.get("SubState"),
            "result": props.get("Result"), "n_restarts": num("NRestarts"),
            "exec_main_status": num("ExecMainStatus"), "exec_main_code": props.get("ExecMainCode"),
            "unit_file_state": props.get("UnitFileState"), "exec_start": exec_start,
            "main_pid": num("MainPID"), "journal": [],
            # a .socket unit: "Listen=[::]:8087 (Stream)" lines, and the service it starts
            "listen": [x.strip() for x in props.get("Listen", "").split("\n") if x.strip()],
            "triggers": props.get("Triggers", "").split(), "triggered_by": props.get("TriggeredBy", "").split()}


def systemd_facts(service: str | None, host: Host | None = None, port: int = 0) -> dict[str, Any]:
    """Failed or restarting service units (and the one the user named), with their journal tail."""
    host = host or LocalHost()
    names: list[str] = []
    cp = host.run(["systemctl", "list-units", "--type=service,socket", "--all", "--no-legend", "--plain",
                   "--no-pager"], timeout=10)
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and (parts[2] == "failed" or parts[3] in ("auto-restart", "failed")):
            names.append(parts[0])
    if port:  # socket units that hold (or held) the port: systemd itself listens for their service
        cp = host.run(["systemctl", "list-sockets", "--all", "--no-legend", "--plain", "--no-pager"], timeout=10)
        for line in cp.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].rsplit(":", 1)[-1] == str(port):
                names += [p for p in parts[1:] if p.endswith((".socket", ".service"))]
    if service:
        names.append(service if "." in service else f"{service}.service")
    names = list(dict.fromkeys(names))[:30]
    if not names:
        return {"units": []}
    cp = host.run(["systemctl", "show", "--no-pager", "-p", ",".join(SYSTEMD_PROPS), *names], timeout=10)
    units = [_unit_record(p) for p in parse_systemctl_show(cp.stdout)]
    for u in units:
        if u["active_state"] != "active" and u["id"] and host.which("journalctl"):
            j = host.run(["journalctl", "-u", u["id"], "-n", str(LOG_LINES), "--no-pager", "-o", "cat"], timeout=10)
            u["journal"] = [ln for ln in j.stdout.splitlines() if ln.strip()][-LOG_LINES:]
    return {"units": units}


def collect_supervisors(req: Request) -> Facts:
    """Collector entry point: supervisord programs and (with systemd as PID 1) service units."""
    return _collect(req)


def _collect(req: Request) -> Facts:
    extra: dict[str, Any] = {}
    lims: list[Limitation] = []
    host = req.system
    found = find_supervisord(host)
    if found:
        extra["supervisord"] = []
        for pid, conf in found:
            uid = procfs.read_uid(host, pid)
            files = Files(host, uid)
            extra["supervisord"].append(supervisord_facts(pid, conf, host, files))
            for path, why in files.refused:
                lims.append(Limitation(
                    f"supervisord file {path}, named by process {pid} (uid {uid}), was not read: {why}",
                    "check that file by hand; portdoctor reads for a process only what its user could read"))
        for e in extra["supervisord"]:
            if e.get("error"):
                lims.append(Limitation(e["error"], "run as root to reach supervisord's socket"))
    if procfs.read_comm(host, 1) == "systemd" and host.which("systemctl"):
        try:
            extra["systemd"] = systemd_facts(req.service, host, req.port)
        except OSError as exc:
            lims.append(Limitation(f"systemctl failed ({exc}): unit states unknown", "run on the host itself"))
    return Facts(fields={"supervisors": from_plain(SupervisorFacts, extra)} if extra else {}, limitations=lims)
