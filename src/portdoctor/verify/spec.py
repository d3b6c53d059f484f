"""The `verify` spec: a YAML file of what this host must look like, read into frozen entries.

Every error names its file and line and all errors are reported at once; unknown keys are
errors. An example:

    timeout: 2                   # seconds per connection (default 2)
    checks:
      - port: 8080               # a TCP port on this host...
        name: shop               # (optional; the JUnit test case name)
        listening: true          # default true; false: nothing may accept on it
        bind: all                # all | loopback | [10.0.0.2, "::1"] (the exact bind addresses)
        families: [4, 6]         # which families `all`/`loopback` must cover (default: 4, and 6
                                 # when this host has IPv6 addresses)
        process: nginx           # name, command-line fragment, systemd unit or container
        reachable_from: [10.0.0.7, 127.0.0.1]
        blocked_from: [192.0.2.10]
        address: 10.0.0.2        # what remote sources connect to (default: this host's address
                                 # on their network)
        http: {path: /health, status: 200}
      - target: db.internal:5432 # ...or a target anywhere: probed from here
        http: false
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portdoctor import yamlfile
from portdoctor.errors import BadInput

if TYPE_CHECKING:
    from portdoctor.model import Target

SCOPES = ("all", "loopback")
DEFAULT_TIMEOUT = 2.0


class SpecError(yamlfile.FileErrors):
    """The spec is not valid; `errors` holds one "file:line: message" per problem."""


@dataclass(frozen=True, slots=True)
class HttpExpect:
    """An HTTP request made once the port accepts, and the statuses that pass."""

    path: str = "/"
    status: tuple[int, ...] = (200,)
    tls: bool = False
    verify: bool = True
    host: str | None = None  # the Host header (default: the address connected to)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the spec: what must hold for a port on this host, or for a target."""

    name: str
    line: int
    port: int
    target: Target | None = None  # None: a port on this host
    listening: bool = True
    bind: str | tuple[str, ...] | None = None  # "all", "loopback" or the exact bind addresses
    families: tuple[int, ...] | None = None
    process: str | None = None
    reachable_from: tuple[str, ...] = ()
    blocked_from: tuple[str, ...] = ()
    address: str | None = None
    http: HttpExpect | None = None

    @property
    def local(self) -> bool:
        """True for a `port:` entry (judged on this host's facts)."""
        return self.target is None

    @property
    def subject(self) -> str:
        """'port 8080' or the target as written."""
        return f"port {self.port}" if self.target is None else self.target.input


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole, valid spec."""

    path: str
    entries: tuple[Entry, ...]
    timeout: float = DEFAULT_TIMEOUT


def _address(v: str) -> str:
    try:
        return str(ipaddress.ip_address(str(v).strip("[]")))
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address") from None


def _statuses(v: Any) -> tuple[int, ...]:
    items = v if isinstance(v, list) else [v]
    if not items or any(isinstance(x, bool) or not isinstance(x, int) or not 100 <= x <= 599 for x in items):
        raise ValueError("an HTTP status (100-599) or a list of them")
    return tuple(items)


def addresses_ok(text: str) -> bool:
    """Whether `text` is one IP address."""
    try:
        _address(text)
    except ValueError:
        return False
    return True


def _bind(v: Any) -> str | tuple[str, ...] | None:
    if v is None or v in SCOPES:
        return v
    if isinstance(v, str) and addresses_ok(v):
        return (_address(v),)  # one address, written without brackets
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return tuple(_address(x) for x in v)
    raise ValueError("write all, loopback, or a list of the addresses the port must be bound to")


def _schema() -> Any:
    """The pydantic models (imported lazily: pydantic costs ~0.1 s to import)."""
    from typing import Annotated, Literal

    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

    Address = Annotated[str, BeforeValidator(lambda v: _address(v) if isinstance(v, str) else v)]

    class Base(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

    class HttpSpec(Base):
        path: str = "/"
        status: Annotated[tuple[int, ...], BeforeValidator(_statuses)] = (200,)
        tls: StrictBool = False
        verify: StrictBool = True
        host: str | None = None

        @field_validator("path")
        @classmethod
        def _path(cls, v: str) -> str:
            if not v.startswith("/") or any(c in v for c in " \r\n"):
                raise ValueError("must start with / and hold no spaces or line breaks")
            return v

    class EntrySpec(Base):
        name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
        port: Annotated[int, Field(ge=1, le=65535, strict=True)] | None = None
        target: str | None = None
        listening: StrictBool = True
        bind: Annotated[str | tuple[str, ...] | None, BeforeValidator(_bind)] = None
        families: Annotated[list[Literal[4, 6]], Field(min_length=1, max_length=2)] | None = None
        process: Annotated[str, Field(min_length=1)] | None = None
        reachable_from: list[Address] = []
        blocked_from: list[Address] = []
        address: Address | None = None
        http: Annotated[HttpSpec | None, BeforeValidator(lambda v: {} if v is True else None if v is False else v)] \
            = None

        @field_validator("target")
        @classmethod
        def _target(cls, v: str | None) -> str | None:
            if v is None:
                return v
            from portdoctor.target import parse_target

            try:
                parse_target(v)
            except BadInput as exc:
                raise ValueError(str(exc)) from None
            return v


    class SpecModel(Base):
        version: Literal[1] = 1
        timeout: Annotated[float, Field(gt=0, le=60)] = DEFAULT_TIMEOUT
        checks: Annotated[list[EntrySpec], Field(min_length=1)]

    return SpecModel


def _entry_rules(data: dict[str, Any], path: str, lines: dict[tuple, int]) -> list[str]:
    """Rules across the keys of one entry, checked on the raw data so that they are listed
    together with the schema's errors, each at the line of the key that breaks it."""
    out: list[str] = []
    checks = data.get("checks")
    for i, e in enumerate(checks if isinstance(checks, list) else []):
        if not isinstance(e, dict):
            continue

        def at(key: str | None) -> str:
            loc = ("checks", i, key) if key else ("checks", i)
            return f"{path}:{yamlfile.line_of(loc, lines)}: {yamlfile.dotted(loc)}"

        if ("port" in e) == ("target" in e):
            out.append(f"{at(None)}: give either port (a port on this host) or target (host:port)")
        if "target" in e:
            for k in ("bind", "families", "process", "address", "reachable_from", "blocked_from"):
                if k in e:
                    out.append(f"{at(k)}: only for a port on this host (port: N), not for a target")
        if e.get("listening") is False:
            for k in ("bind", "families", "process", "http", "reachable_from"):
                if e.get(k) not in (None, False, []):
                    out.append(f"{at(k)}: meaningless with listening: false")
        both = [x for x in (e.get("reachable_from") or []) if x in (e.get("blocked_from") or [])] \
            if isinstance(e.get("reachable_from"), list) and isinstance(e.get("blocked_from"), list) else []
        if both:
            out.append(f"{at('blocked_from')}: {both[0]} is in reachable_from too")
    return out


def load_spec(path: str) -> Spec:
    """Read and validate a spec file; raise SpecError listing every problem."""
    return parse_spec(yamlfile.read(path, "spec", SpecError), path)


def parse_spec(text: str, path: str = "<spec>") -> Spec:
    """Validate YAML `text` (from `path`, for messages) into a Spec."""
    from pydantic import ValidationError

    from portdoctor.target import parse_target

    try:
        data, lines, errors = yamlfile.compose(text, path)
    except yamlfile.FileErrors as exc:
        raise SpecError(exc.errors) from None
    if data is None:
        raise SpecError([f"{path}:1: the spec is empty: it needs a list of checks"])
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1: the spec must be a mapping with a 'checks' list"])
    errors += _entry_rules(data, path, lines)
    try:
        model = _schema().model_validate(data)
    except ValidationError as exc:
        raise SpecError(yamlfile.by_line(errors + yamlfile.pydantic_errors(exc, path, lines))) from None
    if errors:
        raise SpecError(errors)
    entries: list[Entry] = []
    names: dict[str, int] = {}
    for i, e in enumerate(model.checks):
        line = lines.get(("checks", i), 1)
        target = parse_target(e.target) if e.target is not None else None
        port = target.port if target is not None else int(e.port)
        name = e.name or (target.input if target is not None else f"port {port}")
        if name in names:
            errors.append(f"{path}:{line}: checks[{i}]: the name {name!r} is used already (line {names[name]}); "
                          "give each check its own name")
        names.setdefault(name, line)
        http = None
        if e.http is not None:
            path = e.http.path
            if target is not None and "://" in target.input and "path" not in e.http.model_fields_set:
                from urllib.parse import urlsplit

                url = urlsplit(target.input)  # http://host:8080/health checks /health
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            http = HttpExpect(path=path, status=e.http.status,
                              tls=e.http.tls or (target is not None and target.scheme == "https"),
                              verify=e.http.verify, host=e.http.host)
        entries.append(Entry(
            name=name, line=line, port=port, target=target, listening=e.listening, bind=e.bind,
            families=tuple(sorted(set(e.families))) if e.families else None, process=e.process,
            reachable_from=tuple(e.reachable_from), blocked_from=tuple(e.blocked_from), address=e.address,
            http=http))
    if errors:
        raise SpecError(errors)
    return Spec(path=path, entries=tuple(entries), timeout=model.timeout)
