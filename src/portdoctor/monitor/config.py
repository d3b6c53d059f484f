"""The `watch` configuration: a YAML file read into a validated, frozen WatchConfig.

Every error names its file and line (from the YAML node marks) and all errors are reported at
once; unknown keys are errors. A minimal file:

    targets:
      - target: 10.0.0.2:5432
      - target: http://127.0.0.1:8080
        http: {path: /health}
        diagnose: local

The full form, with every default:

    defaults:            # every key here may also be set per target
      interval: 10s
      timeout: 3s
      failures: 2        # consecutive failed checks before a target is down
      successes: 1       # consecutive good checks before it is up again
      diagnose: probe    # probe | local (run a local `diagnose` when a target goes down)
      labels: {}
    targets: [...]
    history: {path: ..., keep_minutes: 48h, keep_hours: 400d, keep_events: 400d}
    alerts: {log: true, flap_window: 10m, flap_changes: 4, group_wait: 5s,
             webhook: {url: ..., timeout: 5s, retries: 3, headers: {}}}
    web: {listen: 127.0.0.1:9716, token_file: ..., token_env: ...}
    concurrency: 1000
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from portdoctor import yamlfile
from portdoctor.errors import BadInput

if TYPE_CHECKING:
    from portdoctor.model import Target

DEFAULT_LISTEN = "127.0.0.1:9716"
# labels our metrics set themselves; a user label must not shadow them
RESERVED_LABELS = frozenset({"target", "name", "state", "cause", "status", "le", "quantile",
                             "instance", "job", "__name__"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(BadInput):
    """The configuration is not valid; `errors` holds one "file:line: message" per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as "500ms", "10s", "5m", "2h", "7d".

    >>> parse_duration("1m"), parse_duration(2.5)
    (60.0, 2.5)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 10s, 5m, 2h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration (write a number of seconds, or 500ms, 10s, 5m, 2h, 7d)")
    if seconds <= 0:
        raise ValueError("a duration must be above 0")
    return seconds


# --------------------------------------------------------------------------- resolved config


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """An HTTP request made after the TCP connection opened, and the statuses that pass."""

    path: str = "/"
    method: str = "GET"
    expect: tuple[int, ...] = ()  # empty: any status from 200 to 399
    tls: bool = False
    verify: bool = True
    host_header: str | None = None

    def passes(self, status: int) -> bool:
        """True when `status` is one the check accepts."""
        return status in self.expect if self.expect else 200 <= status <= 399


@dataclass(frozen=True, slots=True)
class WatchTarget:
    """One watched target with every default applied."""

    name: str
    target: Target
    interval: float
    timeout: float
    failures: int
    successes: int
    diagnose: str  # "probe" | "local"
    service: str | None = None
    from_addr: str | None = None
    http: HttpCheck | None = None
    labels: tuple[tuple[str, str], ...] = ()
    line: int = 0  # where it is defined in the file


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where alerts are POSTed, and how hard to try."""

    url: str
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def safe_url(self) -> str:
        """The URL without credentials, query or fragment (they may hold secrets): for logs."""
        from urllib.parse import urlsplit

        p = urlsplit(self.url)
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{p.port}" if p.port else ""
        return f"{p.scheme}://{host}{port}{p.path}"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """How state changes become alerts."""

    log: bool = True
    webhook: Webhook | None = None
    flap_window: float = 600.0
    flap_changes: int = 4
    group_wait: float = 5.0


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """Where history lives and how long each resolution is kept."""

    path: str
    keep_minutes: float = 48 * 3600.0
    keep_hours: float = 400 * 86400.0
    keep_events: float = 400 * 86400.0


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The HTTP server of the dashboard and /metrics."""

    host: str = "127.0.0.1"
    port: int = 9716
    enabled: bool = True
    token_file: str | None = None
    token_env: str | None = None

    @property
    def loopback(self) -> bool:
        """True when only this host can connect (127.0.0.0/8, ::1, localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def token(self) -> str | None:
        """The access token (read now, from the file or the environment), or None."""
        if self.token_file:
            return Path(self.token_file).read_text().strip() or None
        if self.token_env:
            return os.environ.get(self.token_env) or None
        return None


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """A whole, valid `watch` configuration."""

    path: str
    targets: tuple[WatchTarget, ...]
    history: HistorySettings
    alerts: AlertSettings = AlertSettings()
    web: WebSettings = WebSettings()
    concurrency: int = 1000
    diagnosis_workers: int = 2
    extra_labels: tuple[str, ...] = field(default=())  # union of every target's label names


# --------------------------------------------------------------------------- schema (pydantic)


def _schema() -> Any:
    """Build the pydantic models (imported lazily: pydantic costs ~0.1 s to import)."""
    from typing import Annotated, Union

    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

    Duration = Annotated[float, BeforeValidator(parse_duration)]

    class Base(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class HttpSpec(Base):
        enabled: bool = True
        path: str = "/"
        method: Literal["GET", "HEAD"] = "GET"
        expect: list[Annotated[int, Field(ge=100, le=599)]] = []
        tls: bool | None = None
        verify: bool = True
        host: str | None = None

        @field_validator("path")
        @classmethod
        def _path(cls, v: str) -> str:
            if not v.startswith("/") or any(c in v for c in " \r\n"):
                raise ValueError("must start with / and hold no spaces or line breaks")
            return v

    def _labels(v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _LABEL_NAME.match(key):
                raise ValueError(f"label name {key!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
            if key in RESERVED_LABELS or key.startswith("__"):
                raise ValueError(f"label name {key!r} is reserved (used by portdoctor's own metrics)")
        return v

    Labels = Annotated[dict[str, Union[str, int, float]], BeforeValidator(lambda v: v)]

    class Settings(Base):
        interval: Duration | None = None
        timeout: Duration | None = None
        failures: Annotated[int, Field(ge=1, le=1000)] | None = None
        successes: Annotated[int, Field(ge=1, le=1000)] | None = None
        diagnose: Literal["probe", "local"] | None = None
        service: str | None = None
        from_: str | None = Field(default=None, alias="from")
        # `http: true` is every default, `http: false` turns off a check set in defaults
        http: Annotated[HttpSpec | None, BeforeValidator(
            lambda v: {} if v is True else {"enabled": False} if v is False else v)] = None
        labels: Labels = {}

        @field_validator("labels")
        @classmethod
        def _check_labels(cls, v: dict[str, Any]) -> dict[str, str]:
            return _labels({k: str(x) for k, x in v.items()})

        @field_validator("from_")
        @classmethod
        def _from(cls, v: str | None) -> str | None:
            if v is None:
                return v
            try:
                return str(ipaddress.ip_address(v.strip("[]")))
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address") from None

    class TargetSpec(Settings):
        target: str
        name: Annotated[str, Field(min_length=1, max_length=200)] | None = None

        @field_validator("target")
        @classmethod
        def _target(cls, v: str) -> str:
            from portdoctor.target import parse_target

            try:
                parse_target(v)
            except BadInput as exc:
                raise ValueError(str(exc)) from None
            return v

    class WebhookSpec(Base):
        url: str
        timeout: Duration = 5.0
        retries: Annotated[int, Field(ge=0, le=20)] = 3
        backoff: Duration = 1.0
        headers: dict[str, str] = {}

        @field_validator("url")
        @classmethod
        def _url(cls, v: str) -> str:
            from urllib.parse import urlsplit

            try:
                p = urlsplit(v)
                _ = p.port
            except ValueError as exc:
                raise ValueError(f"not a valid URL: {exc}") from None
            if p.scheme not in ("http", "https") or not p.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
            return v

    class AlertSpec(Base):
        log: bool = True
        webhook: WebhookSpec | None = None
        flap_window: Duration = 600.0
        flap_changes: Annotated[int, Field(ge=2, le=1000)] = 4
        group_wait: Annotated[float, BeforeValidator(lambda v: 0.0 if v in (0, "0") else parse_duration(v))] = 5.0

    class HistorySpec(Base):
        path: str | None = None
        keep_minutes: Duration = 48 * 3600.0
        keep_hours: Duration = 400 * 86400.0
        keep_events: Duration = 400 * 86400.0

    class WebSpec(Base):
        listen: str = DEFAULT_LISTEN
        enabled: bool = True
        token_file: str | None = None
        token_env: str | None = None

        @field_validator("listen")
        @classmethod
        def _listen(cls, v: str) -> str:
            from portdoctor.target import parse_target

            try:
                t = parse_target(v)
            except BadInput as exc:
                raise ValueError(str(exc)) from None
            if "://" in v or t.is_this_host:
                raise ValueError("write the address to listen on as ADDRESS:PORT (127.0.0.1:9716, [::1]:9716, 0.0.0.0:9716)")
            return v

    class ConfigSpec(Base):
        defaults: Settings = Settings()
        targets: Annotated[list[TargetSpec], Field(min_length=1)]
        history: HistorySpec = HistorySpec()
        alerts: AlertSpec = AlertSpec()
        web: WebSpec = WebSpec()
        concurrency: Annotated[int, Field(ge=1, le=100000)] = 1000
        diagnosis_workers: Annotated[int, Field(ge=1, le=64)] = 2

    return ConfigSpec


# --------------------------------------------------------------------------- YAML with lines


def _compose(text: str, path: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """Parse YAML; return (data, path tuple -> 1-based line, duplicate-key errors)."""
    try:
        return yamlfile.compose(text, path)
    except yamlfile.FileErrors as exc:
        raise ConfigError(exc.errors) from None


_dotted = yamlfile.dotted
_line_of = yamlfile.line_of


# --------------------------------------------------------------------------- loading


def default_db_path() -> str:
    """Where history goes when the config names no file."""
    if os.geteuid() == 0:
        return "/var/lib/portdoctor/watch.db"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "portdoctor", "watch.db")


def load_config(path: str) -> WatchConfig:
    """Read and validate a `watch` config file; raise ConfigError listing every problem."""
    return parse_config(yamlfile.read(path, "config", ConfigError), path)


def parse_config(text: str, path: str = "<config>") -> WatchConfig:
    """Validate YAML `text` (from `path`, for messages) into a WatchConfig."""
    from pydantic import ValidationError

    data, lines, errors = _compose(text, path)
    if data is None:
        raise ConfigError([f"{path}:1: the config is empty: it needs a list of targets"])
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the config must be a mapping with a 'targets' list"])
    spec_cls = _schema()
    try:
        spec = spec_cls.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            # "from" is the key the user wrote; pydantic reports the field name, from_
            loc = tuple("from" if p == "from_" else p for p in loc)
            # a union (str | int) reports each branch; name the field, not the branch
            loc = tuple(p for p in loc if p not in ("str", "int", "float"))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "this key is required"
            line = _line_of(loc, lines)
            errors.append(f"{path}:{line}: {_dotted(loc)}: {msg}")
        errors += _raw_checks(data, path, lines)
        raise ConfigError(_by_line(_unique(errors))) from None
    if errors:
        raise ConfigError(errors)
    return _resolve(spec, path, lines)


def _raw_checks(data: dict[str, Any], path: str, lines: dict[tuple, int]) -> list[str]:
    """The whole-file checks of `_resolve` that can run on a file with schema errors too, so
    that every error is listed at once: names used twice, a wide listen without a token."""
    out: list[str] = []
    names: dict[str, int] = {}
    targets = data.get("targets")
    for i, t in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(t, dict):
            continue
        name = t.get("name") or t.get("target")
        if not isinstance(name, str):
            continue
        line = lines.get(("targets", i), 1)
        if name in names:
            out.append(f"{path}:{line}: targets[{i}]: the name {name!r} is used already (line {names[name]}); "
                       "give each target its own name")
        names.setdefault(name, line)
    web = data.get("web")
    if isinstance(web, dict) and isinstance(web.get("listen"), str) and web.get("enabled", True) is not False \
            and not (web.get("token_file") or web.get("token_env")):
        host = web["listen"].rpartition(":")[0].strip("[]")
        try:
            wide = host != "localhost" and not ipaddress.ip_address(host).is_loopback
        except ValueError:
            wide = False
        if wide:
            out.append(f"{path}:{lines.get(('web', 'listen'), 1)}: web.listen: {web['listen']} is reachable from "
                       "other hosts, so an access token is required: set web.token_file or web.token_env")
    return out


def _by_line(errors: list[str]) -> list[str]:
    def line(e: str) -> int:
        parts = e.split(":")
        return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0

    return sorted(errors, key=line)


def _unique(errors: list[str]) -> list[str]:
    seen: set[str] = set()
    return [e for e in errors if not (e in seen or seen.add(e))]


def _resolve(spec: Any, path: str, lines: dict[tuple, int]) -> WatchConfig:
    """Apply defaults, check what needs the whole file (unique names, token), freeze."""
    from portdoctor.target import parse_target

    errors: list[str] = []
    d = spec.defaults
    targets: list[WatchTarget] = []
    names: dict[str, int] = {}
    label_names: set[str] = set()
    for i, t in enumerate(spec.targets):
        line = lines.get(("targets", i), 1)
        target = parse_target(t.target)
        name = t.name or t.target
        if name in names:
            errors.append(f"{path}:{line}: targets[{i}]: the name {name!r} is used already "
                          f"(line {names[name]}); give each target its own name")
        names.setdefault(name, line)
        http_spec = t.http if t.http is not None else d.http
        http: HttpCheck | None = None
        if http_spec is not None and http_spec.enabled:
            http = HttpCheck(path=http_spec.path, method=http_spec.method, expect=tuple(http_spec.expect),
                                 tls=http_spec.tls if http_spec.tls is not None else target.scheme == "https",
                                 verify=http_spec.verify, host_header=http_spec.host)
        labels = {**d.labels, **t.labels}
        label_names |= set(labels)
        timeout = _pick(t.timeout, d.timeout, 3.0)
        interval = _pick(t.interval, d.interval, 10.0)
        if timeout > interval:
            errors.append(f"{path}:{line}: targets[{i}]: timeout {timeout:g} s is longer than the "
                          f"interval {interval:g} s")
        targets.append(WatchTarget(
            name=name, target=target, interval=interval, timeout=timeout,
            failures=_pick(t.failures, d.failures, 2), successes=_pick(t.successes, d.successes, 1),
            diagnose=_pick(t.diagnose, d.diagnose, "probe"), service=_pick(t.service, d.service, None),
            from_addr=_pick(t.from_, d.from_, None), http=http,
            labels=tuple(sorted(labels.items())), line=line,
        ))
    w = spec.web
    listen = parse_target(w.listen)
    web = WebSettings(host=listen.host, port=listen.port, enabled=w.enabled, token_file=w.token_file,
                      token_env=w.token_env)
    if w.token_file and w.token_env:
        errors.append(f"{path}:{lines.get(('web',), 1)}: web: give token_file or token_env, not both")
    if w.enabled and not web.loopback and not (w.token_file or w.token_env):
        errors.append(f"{path}:{lines.get(('web', 'listen'), 1)}: web.listen: {w.listen} is reachable from "
                      "other hosts, so an access token is required: set web.token_file or web.token_env")
    if w.token_file:
        try:
            if not Path(w.token_file).read_text().strip():
                errors.append(f"{path}:{lines.get(('web', 'token_file'), 1)}: web.token_file: the file is empty")
        except OSError as exc:
            errors.append(f"{path}:{lines.get(('web', 'token_file'), 1)}: web.token_file: cannot read "
                          f"{w.token_file}: {exc.strerror}")
    if errors:
        raise ConfigError(errors)
    a = spec.alerts
    webhook = None
    if a.webhook is not None:
        webhook = Webhook(url=a.webhook.url, timeout=a.webhook.timeout, retries=a.webhook.retries,
                          backoff=a.webhook.backoff, headers=tuple(sorted(a.webhook.headers.items())))
    h = spec.history
    return WatchConfig(
        path=path,
        targets=tuple(targets),
        history=HistorySettings(path=h.path or default_db_path(), keep_minutes=h.keep_minutes,
                                keep_hours=h.keep_hours, keep_events=h.keep_events),
        alerts=AlertSettings(log=a.log, webhook=webhook, flap_window=a.flap_window,
                             flap_changes=a.flap_changes, group_wait=a.group_wait),
        web=web,
        concurrency=spec.concurrency,
        diagnosis_workers=spec.diagnosis_workers,
        extra_labels=tuple(sorted(label_names)),
    )


def _pick(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None
