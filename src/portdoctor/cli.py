"""The `portdoctor` command line: parse, call the library, render, exit.

Commands stay thin: each parses its arguments, calls one library function and hands the result
to a renderer. Errors meet the user in one place, `main`, as one line and an exit code.
Heavy modules (rich, psutil, the docker SDK) are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys

import click

from portdoctor import __version__
from portdoctor.errors import ExitCode, PortdoctorError

# command name -> module of portdoctor.commands that defines it, in the order `--help` lists them
# (SPEC's order first). A command's module is imported only when that command runs (or for --help):
# `probe` does not pay for the twenty other commands' options.
COMMANDS: dict[str, str] = {
    "diagnose": "diagnose", "probe": "probe", "explain": "explain", "ports": "ports", "scan": "scan",
    "run": "run", "watch": "watch", "history": "watch", "verify": "verify", "audit": "verify",
    "fix": "fix", "snapshot": "snapshot", "wait": "wait", "guard": "wait",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        import importlib

        found = getattr(importlib.import_module(f"portdoctor.commands.{module}"), cmd_name)
        assert isinstance(found, click.Command)
        return found


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="portdoctor")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.pass_context
def app(ctx: click.Context, debug: bool) -> None:
    """Why is my TCP connection refused, and what exactly do I change to fix it?

    \b
    Examples:
      portdoctor diagnose 127.0.0.1:5432       why is this port refused here?
      portdoctor diagnose :8080 --from 10.0.0.7  as seen by a client at 10.0.0.7
      portdoctor probe localhost:3000          what does a client see, per address?
      portdoctor explain "connect ECONNREFUSED ::1:3000"
      curl -sS http://localhost:9 2>&1 | portdoctor explain -

    Exit codes: 0 the target accepts, 1 a problem was found, 2 bad input,
    3 the check could not be completed (privilege or tool missing).
    """
    ctx.obj = {"debug": debug}
    if debug:  # tracebacks of a collector or check that failed (they go on as limitations)
        import logging

        logger = logging.getLogger("portdoctor")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(logging.StreamHandler(sys.stderr))


# click >= 8.2 raises this for a group called with no command; older click exits with its help
_NO_ARGS: tuple[type[BaseException], ...] = tuple(
    x for x in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if x is not None)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and `python -m portdoctor`: one error boundary."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app.main(args=argv, prog_name="portdoctor", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
        sys.exit(code)
    except click.exceptions.Abort:
        sys.stderr.write("portdoctor: interrupted\n")
        sys.exit(130)
    except _NO_ARGS as exc:  # a command (or the program) called without its arguments: its help
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        sys.exit(ExitCode.USAGE)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "portdoctor"
        sys.stderr.write(f"portdoctor: error: {exc.format_message()} (see '{where} --help')\n")
        sys.exit(ExitCode.USAGE)
    except click.ClickException as exc:
        sys.stderr.write(f"portdoctor: error: {exc.format_message()}\n")
        sys.exit(ExitCode.USAGE)
    except PortdoctorError as exc:
        if debug:
            raise
        sys.stderr.write(f"portdoctor: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("portdoctor: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.OK)
    except Exception as exc:  # the one place an unexpected error meets the user
        if debug:
            raise
        sys.stderr.write(
            f"portdoctor: internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)\n"
        )
        sys.exit(ExitCode.INCOMPLETE)
    sys.exit(ExitCode.OK)
