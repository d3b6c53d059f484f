"""YAML files whose every error names its file and line: `watch` configs, `verify` specs.

`compose` parses YAML text into plain data and a map from each value's path (a tuple of keys
and list indexes) to the 1-based line it starts on, so that a validation error found later (by
pydantic, whose `loc` is such a path) can be reported as `file:line: where: message`.

>>> data, lines, dups = compose("a:\\n  b: [1, 2]\\n", "x.yaml")
>>> data, lines[("a", "b")], dotted(("a", "b", 1))
({'a': {'b': [1, 2]}}, 2, 'a.b[1]')
"""

from __future__ import annotations

from typing import Any, Callable

from portdoctor.errors import BadInput


class FileErrors(BadInput):
    """A file is not valid; `errors` holds one "file:line: message" per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def compose(text: str, path: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """Parse YAML; return (data, path tuple -> 1-based line, duplicate-key errors).

    Raises FileErrors (one line, with the line number of the YAML error) when `text` is not YAML.
    """
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if ctx and ctx_mark is not None and ctx_mark.line + 1 != line:
            what += f" ({ctx} on line {ctx_mark.line + 1})"  # where an unclosed bracket or quote began
        raise FileErrors([f"{path}:{line}: not valid YAML: {what}"]) from None
    lines: dict[tuple, int] = {}
    dups: list[str] = []
    if node is None:
        return None, lines, dups
    loader = yaml.SafeLoader("")

    def walk(n: Any, where: tuple) -> Any:
        lines.setdefault(where, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = walk(k, where + ("<key>",)) if not isinstance(k, yaml.ScalarNode) else loader.construct_object(k)
                if isinstance(key, (dict, list)):
                    key = str(key)
                if key in out:
                    dups.append(f"{path}:{k.start_mark.line + 1}: {dotted(where + (key,))}: "
                                "this key is given twice")
                lines[where + (key,)] = k.start_mark.line + 1
                out[key] = walk(v, where + (key,))
                lines[where + (key,)] = k.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(v, where + (i,)) for i, v in enumerate(n.value)]
        return loader.construct_object(n, deep=True)

    try:
        return walk(node, ()), lines, dups
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise FileErrors([f"{path}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None


def dotted(loc: tuple) -> str:
    """A value's path as a reader writes it: targets[0].http.path."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def line_of(loc: tuple, lines: dict[tuple, int]) -> int:
    """The line of the value at `loc`, or of its nearest enclosing value that has one."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def pydantic_errors(exc: Any, path: str, lines: dict[tuple, int],
                    renames: dict[str, str] | None = None) -> list[str]:
    """Every error of a pydantic ValidationError as "file:line: where: message".

    `renames` maps field names back to the keys the user wrote (`from_` -> `from`); the branch
    names pydantic adds for a union (`str`, `int`, ...) are dropped from the path.
    """
    out: list[str] = []
    renames = renames or {}
    for err in exc.errors():
        loc = tuple(renames.get(p, p) if isinstance(p, str) else p for p in err["loc"])
        loc = tuple(p for p in loc if p not in ("str", "int", "float", "bool", "list[str]")
                    and not (isinstance(p, str) and (p.startswith("function-") or p.startswith("literal["))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "this key is required"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            msg = "must be a mapping (key: value lines)"
        out.append(f"{path}:{line_of(loc, lines)}: {dotted(loc)}: {msg}")
    return out


def by_line(errors: list[str]) -> list[str]:
    """Errors sorted by their line number, each once."""
    seen: set[str] = set()
    unique = [e for e in errors if not (e in seen or seen.add(e))]

    def line(e: str) -> int:
        parts = e.split(":")
        return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0

    return sorted(unique, key=line)


def read(path: str, what: str, error: Callable[[list[str]], Exception]) -> str:
    """The text of `path`; `error` (one line: "PATH: cannot read the WHAT: reason") if it cannot be read."""
    from pathlib import Path

    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error([f"{path}: cannot read the {what}: {reason}"]) from None
