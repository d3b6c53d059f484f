"""`portdoctor run -- CMD ARGS...`: run a program unchanged under strace and explain every
connection it failed to make.

>>> report = run_traced(["curl", "-sS", "http://127.0.0.1:9/"])   # doctest: +SKIP
>>> [(str(f.endpoint), f.errno, f.cause) for f in report.failures]  # doctest: +SKIP
[('127.0.0.1:9', 'ECONNREFUSED', 'service_not_running')]

Modules: `strace` (find a trusted strace, check ptrace works, read its lines), `attempts` (fold
system calls into failed attempts), `names` (DNS answers and /etc/hosts), `runner` (spawn, signals,
exit status), `analyse` (group and diagnose), `report` (the result and its JSON).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from portdoctor.runtrace.attempts import Attempt, Endpoint, Folder
from portdoctor.runtrace.report import RunReport
from portdoctor.runtrace.runner import Exit, ProgramNotFound
from portdoctor.runtrace.strace import SAFE_PATH, TraceUnavailable

__all__ = ["run_traced", "RunReport", "ProgramNotFound", "TraceUnavailable", "Attempt", "Endpoint", "Exit"]


def run_traced(argv: list[str], *, timeout: float = 3.0, diagnose: bool = True,
               strace_path: str = SAFE_PATH,
               on_untraced: Callable[[str], None] | None = None,
               on_failure: Callable[[Attempt, Folder], None] | None = None,
               keep_trace: str | None = None,
               hosts_file: str = "/etc/hosts") -> RunReport:
    """Run `argv` traced; return what it failed to connect to and why.

    The program keeps its stdin, stdout, stderr and signals; its exit status is in the report.
    When tracing is impossible (no trusted strace on `strace_path`, ptrace forbidden), the reason
    goes to `on_untraced` before the program runs untraced. `timeout` bounds each probe of the
    diagnoses; `diagnose=False` only lists the failures. `keep_trace` writes strace's raw output
    to that file (mode 0600). Raises ProgramNotFound when the program cannot be started.
    """
    from portdoctor.runtrace import analyse, runner
    from portdoctor.runtrace.names import read_hosts
    from portdoctor.runtrace.strace import find_strace, preflight

    if not argv:
        raise ProgramNotFound("no program to run (portdoctor run -- CMD ARGS...)", 2)
    runner.locate(argv[0])
    try:
        strace = find_strace(strace_path)
        seccomp, _ = preflight(strace)
    except TraceUnavailable as exc:
        if on_untraced is not None:
            on_untraced(str(exc))
        started = time.time()
        exit_ = runner.run_plain(list(argv))
        return RunReport(tuple(argv), exit_.code, exit_.signal, traced=False, limitation=str(exc),
                         started_at=started, seconds=time.time() - started)

    sink = _open_private(keep_trace) if keep_trace else None
    folder = Folder(on_failure=on_failure)
    started = time.time()
    try:
        exit_, folded = runner.trace_program(list(argv), strace, seccomp,
                                             on_line=sink.write if sink is not None else None,
                                             folder=folder)
    finally:
        if sink is not None:
            sink.close()
    seconds = time.time() - started
    if folded.first_ts is None and (exit_.code or exit_.signal):
        # strace ended without starting the program (it said why on stderr): run it as it is
        reason = f"strace could not start the program (strace exit status {exit_.status})"
        if on_untraced is not None:
            on_untraced(reason)
        exit_ = runner.run_plain(list(argv))
        return RunReport(tuple(argv), exit_.code, exit_.signal, traced=False, limitation=reason,
                         started_at=started, seconds=time.time() - started)
    targets = analyse.group(folded, folder, read_hosts(hosts_file))
    if diagnose and targets:
        targets = analyse.diagnose_all(targets, timeout)
    return RunReport(
        tuple(argv), exit_.code, exit_.signal, traced=True, started_at=folded.first_ts or started,
        seconds=seconds, processes=1 + folded.processes_seen, connected=sum(folded.successes.values()),
        failures=tuple(targets), lookups=tuple(analyse.group_lookups(folded, folder)),
        ignored=dict(folded.ignored), unparsed_lines=folded.bad_lines,
        limitation=(f"the trace could not be read to its end ({folded.reader_error}): failures after "
                    "that point are missing" if folded.reader_error else None))


def _open_private(path: str):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape")
