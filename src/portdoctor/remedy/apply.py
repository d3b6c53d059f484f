"""Apply a fix plan step by step, prove it worked, and put everything back when it did not.

Every step is journaled as it is done (remedy/journal.py): the backup of an edited file, the
handle of an inserted nft rule, the old value of a sysctl, the new pid of a restarted server.
When a step fails, the service does not come back, or the target still refuses afterwards,
the steps done are undone in reverse order, restarts last (a server restarts once its files
are back), and the host is as it was. `undo_last` does the same for the last applied fix.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from portdoctor.errors import PortdoctorError
from portdoctor.host import LocalHost
from portdoctor.model import Action, ActionKind, Cause, State, Target
from portdoctor.redact import argv as redact_argv
from portdoctor.remedy import restart
from portdoctor.remedy.configedit import VALIDATORS, EditError, append_setting, edit_text, unified_diff
from portdoctor.remedy.journal import Journal, last_applied
from portdoctor.remedy.plan import Plan

Say = Callable[[str], None]
PORT_WAIT = 20.0  # seconds a restarted service gets to accept again
# causes that stop the TCP connection itself (a proxy's dead upstream does not)
_BLOCKING = (Cause.SERVICE_NOT_RUNNING, Cause.WRONG_PORT, Cause.WRONG_INTERFACE, Cause.FIREWALL_REJECT,
             Cause.FIREWALL_DROP, Cause.RESOURCE_EXHAUSTION, Cause.PORT_MAPPING)


class StepError(PortdoctorError):
    """One step of a fix failed; the steps before it are rolled back."""


@dataclass
class Result:
    """What a fix (or an undo) did."""

    status: str  # fixed, rolled_back, undone, nothing, failed_rollback
    log: list[str] = field(default_factory=list)
    verified: str | None = None  # how the connection was checked afterwards, and what it gave
    reason: str | None = None
    journal: str | None = None
    log_lines: list[str] = field(default_factory=list)  # the service's last words when it did not come back

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "verified": self.verified, "reason": self.reason, "journal": self.journal,
                "log": list(self.log), "service_log": list(self.log_lines)}


# --------------------------------------------------------------------------- previews


def preview(action: Action) -> str:
    """What the step will do, as the plan prints it: the diff of an edit, the command of the rest."""
    if action.kind is ActionKind.EDIT_SETTING and action.path and action.path.startswith("/"):
        try:
            before = Path(action.path).read_text(errors="surrogateescape")
            return unified_diff(action.path, before, changed_text(action, before))
        except (OSError, EditError) as exc:
            return f"(cannot show the change: {exc})"
    if action.kind is ActionKind.RESTART and action.tool == "respawn":
        try:
            how = restart.with_config(restart.how_started(action.pid or 0), action.path)
            return f"kill -TERM {action.pid}; then, as uid {how.uid} in {how.cwd}: {shlex.join(redact_argv(how.argv))}"
        except restart.RestartError as exc:
            return f"(cannot read how it was started: {exc})"
    if action.kind is ActionKind.SYSCTL:
        return f"{shlex.join(action.argv)}\ntee -a {action.path} <<< '{action.key} = {action.new}'"
    return shlex.join(action.argv) if action.argv else action.changes


# --------------------------------------------------------------------------- one step


def changed_text(action: Action, before: str) -> str:
    """The config file's text after the action: one value changed, or (no line: the setting is at
    its default) one `key = value` line added at the end."""
    if action.line is None and action.old is None:
        return append_setting(before, f"{action.key} = {action.new}")
    return edit_text(before, action.line or 0, action.key or "", action.old or "", action.new or "")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(argv: list[str] | tuple[str, ...], what: str, timeout: float = 60.0) -> str:
    cp = restart.run_quiet(list(argv), timeout)
    if cp.returncode != 0:
        raise StepError(f"{what}: `{shlex.join(argv)}` failed (exit {cp.returncode}): "
                        f"{(cp.stderr or cp.stdout).strip()[-400:]}")
    return cp.stdout


def _validate(action: Action, path: str, new_text: str) -> str | None:
    """Run the server's own validator on an edited copy beside the file; None when none applies."""
    spec = VALIDATORS.get(action.service or "")
    if spec is None:
        return None
    if action.service == "nginx" and not re.search(r"^\s*events\s*\{", new_text, re.M):
        return "not validated: an included file (nginx checks whole configurations only)"
    host = LocalHost()
    exe = host.which(spec[0])
    if exe is None:
        return None
    ok, why = host.trusted_executable(exe)
    if not ok:
        return f"not validated: {why}"
    copy = Path(path).with_name(f".{Path(path).name}.portdoctor-check")
    copy.write_text(new_text, errors="surrogateescape")
    try:
        argv = [exe, *(a.replace("{path}", str(copy)) for a in spec[1:])]
        cp = restart.run_quiet(argv, 30)
    finally:
        copy.unlink(missing_ok=True)
    if cp.returncode != 0:
        raise StepError(f"{spec[0]} rejects the edited {path}: {(cp.stderr or cp.stdout).strip()[-400:]}")
    return f"validated with {spec[0]}"


def do_step(action: Action, journal: Journal, say: Say, kept: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply one action; return its journal record (what undo needs)."""
    rec: dict[str, Any] = {"action": action.to_json()}
    kind = action.kind
    if kind is ActionKind.EDIT_SETTING:
        path = action.path or ""
        data = Path(path).read_bytes()
        before = data.decode(errors="surrogateescape")
        try:
            after = changed_text(action, before)
        except EditError as exc:
            raise StepError(str(exc)) from exc
        checked = _validate(action, path, after)
        rec.update(path=path, backup=journal.backup(path), sha_before=_sha(data))
        new = after.encode(errors="surrogateescape")
        with open(path, "r+b") as fh:  # in place: owner, mode and links of the file stay
            fh.write(new)
            fh.truncate()
        rec["sha_after"] = _sha(new)
        say(f"edited {path}: {action.key} {action.old} -> {action.new}" + (f" ({checked})" if checked else ""))
    elif kind is ActionKind.RESTART:
        rec.update(_restart(action, journal, say, kept))
    elif kind is ActionKind.SYSCTL:
        key = action.key or ""
        proc_path = Path("/proc/sys") / key.replace(".", "/")
        old = proc_path.read_text().strip()
        _run(action.argv, f"set {key}")
        rec.update(key=key, old=old)
        conf = Path(action.path or "")
        if conf.exists():
            rec["conf_backup"] = journal.backup(str(conf))
        rec["conf"] = str(conf)
        conf.parent.mkdir(parents=True, exist_ok=True)
        lines = [ln for ln in (conf.read_text().splitlines() if conf.exists() else [])
                 if ln.split("=")[0].strip() != key]
        conf.write_text("\n".join([*lines, f"{key} = {action.new}"]) + "\n")
        say(f"set {key} = {action.new} (was {old}), kept in {conf}")
    elif kind is ActionKind.FD_LIMIT:
        pid = action.pid or 0
        soft, hard = _nofile(pid)
        new = min(hard, max(65536, soft * 4)) if hard > 0 else max(65536, soft * 4)
        if new <= soft:
            raise StepError(f"pid {pid} already has its hard open-files limit ({hard}) as its soft one")
        _run(["prlimit", f"--pid={pid}", f"--nofile={new}:{hard}"], "raise the open-files limit")
        rec.update(pid=pid, soft=soft, hard=hard)
        say(f"raised the open-files limit of pid {pid} from {soft} to {new} (hard {hard})")
    elif kind is ActionKind.FIREWALL_RULE:
        rec.update(_firewall(action, say))
    elif kind in (ActionKind.START, ActionKind.COMMAND):
        out = _run(action.argv, action.changes)
        if action.tool == "redis-cli" and out.strip() != "OK":  # redis-cli exits 0 on an error reply
            raise StepError(f"redis answered `{out.strip()[:200]}` to CONFIG SET {action.key}")
        rec["undo_argv"] = shlex.split(action.undo or "")
        say(f"ran {shlex.join(action.argv)}")
    else:
        raise StepError(f"{kind.value} is not applied automatically")
    return rec


def _nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            parts = line.split()
            soft, hard = parts[3], parts[4]
            return (int(soft) if soft.isdigit() else 1 << 20), (int(hard) if hard.isdigit() else 1 << 20)
    raise StepError(f"the limits of pid {pid} cannot be read")


def _restart(action: Action, journal: Journal, say: Say, kept: dict[str, Any] | None) -> dict[str, Any]:
    tool = action.tool
    if tool == "respawn":
        log = journal.folder / f"{action.service or 'server'}.log"
        new_pid, how = restart.respawn(action.pid or 0, log, kept, config=action.path)
        say(f"restarted {action.service} by hand: pid {action.pid} stopped, pid {new_pid} started "
            f"(output in {log})")
        # the command line may hold a password: the journal keeps it redacted, and its hash to find it again
        return {"tool": tool, "pid": new_pid, "argv": list(redact_argv(how.argv)), "name": how.name, "log": str(log),
                "argv_sha": restart.argv_hash(how.argv), "config": action.path}
    if tool == "nginx":
        pid = action.pid or 0
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError as exc:
            raise StepError(f"nginx master pid {pid} is gone") from exc
        time.sleep(1.0)
        say(f"reloaded nginx (SIGHUP to master pid {pid})")
        return {"tool": tool, "pid": pid}
    _run(action.argv, action.changes)
    say(f"ran {shlex.join(action.argv)}")
    return {"tool": tool, "argv": list(action.argv)}


_HANDLE = re.compile(r"#\s*handle\s+(\d+)")


def _firewall(action: Action, say: Say) -> dict[str, Any]:
    argv = list(action.argv)
    tool = action.tool
    if tool == "nft":
        out = _run(["nft", "--echo", "--handle", *argv[1:]], "insert the nft rule")
        m = _HANDLE.search(out)
        if m is None:
            raise StepError(f"nft did not say the new rule's handle: {out.strip()[:200]}")
        where = argv[3:6]
        say(f"ran {shlex.join(argv)} (handle {m.group(1)})")
        return {"undo_argv": ["nft", "delete", "rule", *where, "handle", m.group(1)]}
    if tool == "ufw":
        status = _run(["ufw", "status", "numbered"], "read ufw's rules")
        if not re.search(r"^\[\s*1\]", status, re.M):  # `ufw insert 1` needs a rule 1
            argv = ["ufw", *argv[3:]]
    _run(argv, action.changes)
    say(f"ran {shlex.join(argv)}")
    return {"undo_argv": shlex.split(action.undo or "")}


# --------------------------------------------------------------------------- undo


def undo_step(rec: dict[str, Any], say: Say, kept: dict[str, Any] | None = None) -> None:
    """Undo one journaled step (restarts: restart again). `kept`: what `respawn` kept of a server
    restarted in this run, to start it again even when the restarted one died."""
    kind = rec["action"]["kind"]
    if kind == ActionKind.EDIT_SETTING.value:
        path, backup = rec["path"], rec["backup"]
        data = Path(backup).read_bytes()
        current = Path(path).read_bytes() if Path(path).exists() else b""
        if _sha(current) != rec.get("sha_after"):
            say(f"note: {path} changed since the fix; restoring the backup anyway")
        with open(path, "r+b" if Path(path).exists() else "wb") as fh:
            fh.write(data)
            fh.truncate()
        say(f"restored {path} from {backup}")
    elif kind == ActionKind.RESTART.value:
        tool = rec.get("tool")
        if tool == "respawn":
            pid = rec["pid"]
            if not restart.alive(pid):
                found = restart.find_again(rec["argv_sha"])
                if found is None and kept and "how" in kept:
                    new_pid = restart.start_kept(kept, Path(rec["log"]))
                    say(f"started {rec.get('name')} again the way it ran before: pid {new_pid}")
                    return
                if found is None:
                    raise StepError(f"{rec.get('name')} (pid {pid}) is no longer running; start it yourself: "
                                    f"{shlex.join(rec['argv'])}")
                pid = found
            new_pid, _how = restart.respawn(pid, Path(rec["log"]), config=rec.get("config"))
            say(f"restarted {rec.get('name')} again: pid {new_pid}")
        elif tool == "nginx":
            os.kill(rec["pid"], signal.SIGHUP)
            time.sleep(1.0)
            say(f"reloaded nginx again (master pid {rec['pid']})")
        else:
            _run(rec["argv"], "restart again")
            say(f"ran {shlex.join(rec['argv'])} again")
    elif kind == ActionKind.SYSCTL.value:
        _run(["sysctl", "-w", f"{rec['key']}={rec['old']}"], f"restore {rec['key']}")
        conf = Path(rec["conf"])
        if rec.get("conf_backup"):
            conf.write_bytes(Path(rec["conf_backup"]).read_bytes())
        else:
            conf.unlink(missing_ok=True)
        say(f"set {rec['key']} back to {rec['old']}")
    elif kind == ActionKind.FD_LIMIT.value:
        _run(["prlimit", f"--pid={rec['pid']}", f"--nofile={rec['soft']}:{rec['hard']}"], "restore the limit")
        say(f"set the open-files limit of pid {rec['pid']} back to {rec['soft']}")
    else:
        argv = rec.get("undo_argv") or []
        if not argv:
            raise StepError(f"no way to undo `{rec['action'].get('changes')}`")
        _run(argv, "undo")
        say(f"ran {shlex.join(argv)}")


def rollback(records: list[dict[str, Any]], say: Say, kept: dict[int, dict[str, Any]] | None = None) -> list[str]:
    """Undo `records` in reverse order, restarts after everything else; return the errors."""
    errors: list[str] = []
    order = list(range(len(records)))
    restarts = [i for i in order if records[i]["action"]["kind"] == ActionKind.RESTART.value]
    others = [i for i in order if records[i]["action"]["kind"] != ActionKind.RESTART.value]
    for i in [*reversed(others), *reversed(restarts)]:
        rec = records[i]
        try:
            undo_step(rec, say, (kept or {}).get(i))
        except (PortdoctorError, OSError) as exc:
            errors.append(str(exc))
            say(f"could not undo: {exc}")
    return errors


# --------------------------------------------------------------------------- verify


def connect_from(address: str, target: Target, timeout: float) -> str:
    """Connect to the target with `address` (an address of this host) as the source."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        infos = socket.getaddrinfo(target.host, target.port, fam, socket.SOCK_STREAM)
    except socket.gaierror:
        return "dns_error"
    for info in infos:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.bind((address, 0))
            s.connect(info[4])
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "error"
        finally:
            s.close()
    return "error"


def verify(plan: Plan, from_addr: str | None, wait: float = PORT_WAIT,
           died: Callable[[], bool] = lambda: False) -> tuple[bool, str]:
    """Whether the target accepts now: from --from when it is an address of this host, otherwise
    from here; for a --from elsewhere, a fresh diagnosis for its clients decides (this host's own
    connection may take another way through the firewall, over lo)."""
    from portdoctor.hostview import is_local
    from portdoctor.probe import probe

    target = plan.verify_target
    snap = plan.diagnosis.snapshot
    local_from = bool(from_addr and snap is not None and is_local(snap, from_addr))
    remote_from = bool(from_addr) and not local_from and plan.upstream is None
    if plan.cause is Cause.PROXY_UPSTREAM and plan.upstream is None:
        return _verify_proxy(plan, from_addr, wait, died)
    restarted = any(a.kind in (ActionKind.RESTART, ActionKind.START) for a in plan.all_steps)
    deadline = time.monotonic() + (wait if restarted or not remote_from else 2.0)
    state = "refused"
    while True:
        if local_from:
            state = connect_from(from_addr or "", target, 2.0)
        else:
            state = probe(target, timeout=2.0).state.value
        if state == State.OPEN.value or time.monotonic() > deadline or died():
            break
        time.sleep(0.3)
    where = f"from {from_addr}" if local_from else "from here"
    if remote_from:
        from portdoctor.diagnose import diagnose

        again = diagnose(plan.diagnosis.target, from_addr=from_addr, timeout=2.0)
        acted = plan.acted or plan.cause
        same = [f for f in again.findings if f.severity.value == "error" and f.cause is acted]
        blocking = [f for f in again.findings if f.severity.value == "error" and f.cause in _BLOCKING]
        if state == State.OPEN.value and not same:
            return True, (f"{target.input} accepts connections from here, and a fresh diagnosis for clients "
                          f"from {from_addr} (not an address of this host) no longer finds {acted.value}")
        if not blocking:
            return True, (f"{target.input} is {state} from here (this host's own connection), and a fresh "
                          f"diagnosis for clients from {from_addr} finds nothing in their way")
        bad = (same or blocking)[0]
        return False, (f"{target.input} is {state} from here; a fresh diagnosis for {from_addr} still finds "
                       f"{bad.cause.value}: {bad.summary}")
    if state == State.OPEN.value:
        return True, f"{target.input} accepts connections {where}"
    return False, f"{target.input} is still {state} {where} after {wait:g} s"


def _verify_proxy(plan: Plan, from_addr: str | None, wait: float,
                  died: Callable[[], bool]) -> tuple[bool, str]:
    """A proxy accepts TCP either way: once it listens again, a fresh diagnosis says whether its
    upstream answers now."""
    from portdoctor.diagnose import diagnose
    from portdoctor.probe import probe

    target = plan.diagnosis.target
    deadline = time.monotonic() + wait
    while probe(target, timeout=2.0).state is not State.OPEN and time.monotonic() < deadline and not died():
        time.sleep(0.3)
    while True:
        again = diagnose(target, from_addr=from_addr, timeout=2.0)
        errors = [f for f in again.findings if f.severity.value == "error"]
        if again.verdict.cause is Cause.OK or not errors:
            return True, f"a fresh diagnosis of {target.input} finds its upstream answering"
        if time.monotonic() > deadline or died():
            return False, f"a fresh diagnosis still finds {again.verdict.cause.value}: {again.verdict.summary}"
        time.sleep(0.5)


# --------------------------------------------------------------------------- the whole fix


def apply_plan(plan: Plan, from_addr: str | None, say: Say, wait: float = PORT_WAIT) -> Result:
    """Apply every step of `plan`, verify, and roll back when anything fails."""
    steps = plan.all_steps
    journal = Journal.create(plan.diagnosis.target.input, plan.cause.value)
    result = Result("fixed", journal=str(journal.folder))

    def log(msg: str) -> None:
        result.log.append(msg)
        say(msg)

    failure: str | None = None
    kept: dict[int, dict[str, Any]] = {}  # step index -> how a restarted server ran (rollback only)
    try:
        for i, action in enumerate(steps, 1):
            log(f"step {i}/{len(steps)}: {action.changes}")
            keep = kept.setdefault(len(journal.steps), {})
            try:
                journal.add(do_step(action, journal, log, keep))
            except (PortdoctorError, OSError) as exc:
                failure = f"step {i} failed: {exc}"
                if keep.get("how") is not None:  # stopped, not started again: the journal must know
                    how = keep["how"]
                    journal.add({"action": action.to_json(), "tool": "respawn", "pid": 0,
                                 "argv": list(redact_argv(how.argv)), "argv_sha": restart.argv_hash(how.argv),
                                 "name": how.name, "log": str(journal.folder / f"{action.service or 'server'}.log")})
                break
        return _finish(plan, from_addr, wait, journal, result, failure, log, kept)
    finally:
        for keep in kept.values():
            restart.close_kept(keep)


def _finish(plan: Plan, from_addr: str | None, wait: float, journal: Journal, result: Result,
            failure: str | None, log: Say, kept: dict[int, dict[str, Any]]) -> Result:
    if failure is None:
        def died() -> bool:  # a server restarted by hand that exited: no use waiting for it
            return any(r.get("tool") == "respawn" and not restart.alive(r.get("pid") or 0) for r in journal.steps)

        ok, how = verify(plan, from_addr, wait, died)
        result.verified = how
        log(f"check: {how}")
        if not ok:
            failure = "the target does not accept connections after the fix"
            result.log_lines = _service_log(journal.steps)
    if failure is None:
        journal.set_status("applied", verified=result.verified)
        return result
    log(f"{failure}; rolling back {len(journal.steps)} step(s)")
    errors = rollback(journal.steps, log, kept)
    journal.set_status("rolled_back" if not errors else "failed_rollback", reason=failure, errors=errors)
    result.status = "rolled_back" if not errors else "failed_rollback"
    result.reason = failure + (f"; the rollback could not undo: {'; '.join(errors)}" if errors else "")
    return result


def _service_log(records: list[dict[str, Any]]) -> list[str]:
    """The last lines the started or restarted service wrote, for the user (secrets removed)."""
    from portdoctor.redact import text as redact_text

    for rec in reversed(records):
        act = rec["action"]
        lines: list[str] = []
        if rec.get("log"):
            try:
                lines = Path(rec["log"]).read_text(errors="replace").splitlines()[-10:]
            except OSError:
                lines = []
        elif act.get("tool") == "supervisord" and act["kind"] in ("start", "restart"):
            ctl = list(act.get("argv", []))[:-2]
            cp = restart.run_quiet([*ctl, "tail", act.get("service", ""), "stderr"], 10)
            lines = cp.stdout.splitlines()[-10:]
            if not any(ln.strip() for ln in lines):
                cp = restart.run_quiet([*ctl, "tail", act.get("service", "")], 10)
                lines = cp.stdout.splitlines()[-10:]
        elif act.get("tool") == "systemd":
            cp = restart.run_quiet(["journalctl", "-u", act.get("service", ""), "-n", "10", "--no-pager"], 10)
            lines = cp.stdout.splitlines()[-10:]
        if lines:
            return [redact_text(ln) for ln in lines]
    return []


def undo_last(say: Say) -> Result:
    """Undo the last applied fix, from its journal."""
    journal = last_applied()
    if journal is None:
        return Result("nothing", reason="no applied fix is journaled")
    result = Result("undone", journal=str(journal.folder))

    def log(msg: str) -> None:
        result.log.append(msg)
        say(msg)

    log(f"undoing the fix of {journal.doc.get('target')} applied {journal.doc.get('applied_at')}")
    errors = rollback(journal.steps, log)
    journal.set_status("undone" if not errors else "failed_undo", errors=errors)
    if errors:
        result.status = "failed_rollback"
        result.reason = "; ".join(errors)
    return result
