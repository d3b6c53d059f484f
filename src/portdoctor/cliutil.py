"""What the commands share: output options, the format chosen, timeouts, `--from`, snapshot files,
and rendering a result. Light on purpose: every command imports it."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from portdoctor.errors import BadInput

FORMATS = ("text", "json", "markdown")


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command `--format text|json|markdown` and `--json`."""
    func = click.option("--json", "as_json", is_flag=True, help="Short for --format json.")(func)
    func = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
        help="Output format.",
    )(func)
    return func


def fmt_of(fmt: str, as_json: bool) -> str:
    """The output format: --json wins over --format."""
    return "json" if as_json else fmt


def timeout_value(value: float) -> float:
    """A --timeout in seconds, checked (above 0, at most an hour)."""
    if not value > 0 or value > 3600:
        raise click.BadParameter("must be a number of seconds above 0 and at most 3600")
    return value


def parse_from(text: str | None) -> str | None:
    if text is None:
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise BadInput(f"--from {text!r} is not an IP address") from None


def read_snapshot(path: str) -> Any:
    """A `portdoctor.snapshot/2` file (or a recording holding one) as a Snapshot; BadInput if it is not."""
    import json
    from portdoctor.snapshot import Snapshot

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read the snapshot {path}: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("snapshot"), dict):
        doc = doc["snapshot"]  # a recording (`diagnose --record`)
    return Snapshot.from_json(doc)


def emit(kind: str, result: Any, fmt: str) -> None:
    """Render `result` (a probe, explanation or diagnosis) in the chosen format to stdout."""
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    elif fmt == "markdown":
        from portdoctor.render import markdown

        sys.stdout.write(getattr(markdown, kind)(result))
    else:
        from portdoctor.render import text

        getattr(text, kind)(result)


def check_writable(path: str | None, what: str) -> None:
    """BadInput unless `path` (a file the command will write, None or "-" for none) can be written:
    checked before the work, so a typo in an output path costs no run and no traceback."""
    import os

    if path in (None, "-"):
        return
    assert path is not None
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise BadInput(f"cannot write {what} {path}: it is a directory")
    if not os.path.isdir(parent):
        raise BadInput(f"cannot write {what} {path}: no directory {parent}")
    if os.path.exists(path) and not os.access(path, os.W_OK) or not os.path.exists(path) and not os.access(parent, os.W_OK):
        raise BadInput(f"cannot write {what} {path}: permission denied")
