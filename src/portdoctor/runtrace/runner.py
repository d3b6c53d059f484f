"""Run a program under strace (or without it), keeping what the program sees as it would be
without the wrapper: its stdin, stdout and stderr, its signal mask and dispositions, its
environment and working directory, and its exit status.

Signals: Ctrl-C and other terminal signals reach the program directly (it shares the terminal's
foreground process group), so they are not sent again; a signal another process sends to
portdoctor itself (SIGTERM from a supervisor, kill -INT PID) is forwarded to the program. strace
ignores both (it blocks fatal signals while it runs a command with -o).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable

from portdoctor.runtrace.attempts import Folded, Folder
from portdoctor.runtrace.strace import LineReader, command

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal driver's ^C, ^\)


class ProgramNotFound(Exception):
    """The program could not be started; `code` is the shell's exit code for it (127 or 126)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Exit:
    """How the program ended: its exit code, or the signal that killed it."""

    code: int | None
    signal: int | None

    @property
    def status(self) -> int:
        """The exit status a shell reports: the code, or 128 + the signal number."""
        if self.signal is not None:
            return 128 + self.signal
        return self.code if self.code is not None else 0

    @classmethod
    def from_wait(cls, status: int) -> Exit:
        """From a waitpid status."""
        if os.WIFSIGNALED(status):
            return cls(None, os.WTERMSIG(status))
        return cls(os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, None)


def locate(argv0: str, env: dict[str, str] | None = None) -> str:
    """The file the shell would run for `argv0` (PATH search as the shell does), or raise."""
    env = os.environ if env is None else env
    if "/" in argv0:
        path = argv0
        if not os.path.exists(path):
            raise ProgramNotFound(f"{argv0}: No such file or directory", 127)
    else:
        found = shutil.which(argv0, mode=os.F_OK, path=env.get("PATH", os.defpath))
        if found is None:
            raise ProgramNotFound(f"{argv0}: command not found", 127)
        path = found
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise ProgramNotFound(f"{argv0}: Permission denied", 126)
    return path


def run_plain(argv: list[str]) -> Exit:
    """Run `argv` as it is, with the same signal handling as the traced run."""
    path = locate(argv[0])
    return _supervise(lambda mask: _spawn(path, argv, mask), lambda: None)


def trace_program(argv: list[str], strace: str, seccomp: bool = True,
               on_line: Callable[[str], None] | None = None,
               folder: Folder | None = None) -> tuple[Exit, Folded]:
    """Run `argv` under `strace`; return how it ended and the folded trace.

    `on_line` sees every raw output line (to keep a copy of the trace); `folder` receives the
    events (pass one with an on_failure callback for live output).
    """
    locate(argv[0])
    folder = folder or Folder()
    reader = LineReader()
    tmp = tempfile.mkdtemp(prefix="portdoctor-run-")  # 0700, owned by us: no one else can open the FIFO
    fifo = os.path.join(tmp, "trace")
    os.mkfifo(fifo, 0o600)
    state: dict[str, object] = {}

    def consume() -> None:
        # Never stop reading before strace stops writing: a reader that gave up would block
        # strace, and with it the program. A line that cannot be handled is counted and skipped.
        with open(fifo, "rb", buffering=1 << 16) as fh:
            state["opened"] = True
            for raw in fh:
                if "error" in state:
                    continue
                try:
                    line = raw.decode("utf-8", "surrogateescape")
                    if on_line is not None:
                        on_line(line)
                    ev = reader.feed(line)
                    if ev is not None:
                        folder.feed(ev)
                except Exception as exc:  # handed to the caller's thread once the program ended
                    state["error"] = exc

    worker = threading.Thread(target=consume, name="portdoctor-strace-reader", daemon=True)
    cmd = command(strace, fifo, argv, seccomp)
    try:
        exit_ = _supervise(lambda mask: _spawn(strace, cmd, mask, start=worker.start),
                           lambda: folder.out.root_pid)
        worker.join(5.0)
        if worker.is_alive() and not state.get("opened"):
            _unblock(fifo)  # strace ended before it opened the FIFO: let the reader return
            worker.join(1.0)
    finally:
        try:
            os.unlink(fifo)
            os.rmdir(tmp)
        except OSError:
            pass
    folded = folder.finish(reader.bad_lines)
    if "error" in state:
        exc = state["error"]
        folded.reader_error = f"{type(exc).__name__}: {exc}"
    return exit_, folded


def _unblock(fifo: str) -> None:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def _spawn(path: str, argv: list[str], mask: set[signal.Signals],
           start: Callable[[], None] | None = None) -> int:
    # The child gets the signal mask portdoctor was started with, default SIGPIPE/SIGXFSZ
    # (Python ignores them; a program expects the default), the environment and descriptors as is.
    pid = os.posix_spawn(path, argv, os.environ, setsigmask=mask,
                         setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    if start is not None:
        start()
    return pid


def _supervise(spawn: Callable[[set[signal.Signals]], int], target: Callable[[], int | None]) -> Exit:
    """Spawn with forwarded signals blocked here, wait for the child, forward signals sent to us."""
    watched = {*FORWARDED, signal.SIGCHLD}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        pid = spawn(old)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return Exit.from_wait(status)
            info = signal.sigtimedwait(watched, 0.2)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_code == SI_KERNEL:
                continue  # from the terminal: the program, in the same process group, has it already
            _forward(info.si_signo, target() or pid)
    finally:
        while signal.sigtimedwait(watched, 0) is not None:
            pass  # what arrived while the program ran was handled above or belongs to it
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _forward(signo: int, pid: int) -> None:
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass
