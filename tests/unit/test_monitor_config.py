"""watch config: defaults, and every error with its file and line, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from portdoctor.monitor.config import ConfigError, load_config, parse_config, parse_duration


def errors_of(text: str, path: str = "w.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    return info.value.errors


def test_minimal_config_gets_every_default() -> None:
    cfg = parse_config("targets:\n  - target: 10.0.0.2:5432\n", "w.yaml")
    (t,) = cfg.targets
    assert (t.name, t.target.host, t.target.port) == ("10.0.0.2:5432", "10.0.0.2", 5432)
    assert (t.interval, t.timeout, t.failures, t.successes, t.diagnose) == (10.0, 3.0, 2, 1, "probe")
    assert t.http is None
    assert (cfg.web.host, cfg.web.port, cfg.web.loopback) == ("127.0.0.1", 9716, True)
    assert cfg.alerts.webhook is None


def test_defaults_apply_and_targets_override() -> None:
    cfg = parse_config("""
defaults: {interval: 30s, timeout: 2s, diagnose: local, http: true, labels: {env: prod}}
targets:
  - target: https://127.0.0.1:8443
  - {target: "127.0.0.1:22", name: ssh, interval: 1m, http: false, labels: {team: ops}, from: 10.0.0.1}
""")
    web, ssh = cfg.targets
    assert web.http is not None and web.http.tls and web.http.path == "/"
    assert ssh.http is None and ssh.interval == 60.0 and ssh.timeout == 2.0 and ssh.diagnose == "local"
    assert ssh.from_addr == "10.0.0.1"
    assert dict(ssh.labels) == {"env": "prod", "team": "ops"}
    assert cfg.extra_labels == ("env", "team")


def test_every_error_is_listed_with_its_line() -> None:
    errs = errors_of("""defaults:
  interval: 10s
  intervall: 5
targets:
  - target: 10.0.0.2:8080
    timeout: abc
  - target: "nohost:"
  - name: nameless
  - target: 127.0.0.1:80
    http: {path: health}
    labels: {job: x}
alerts:
  webhook: {url: "ftp://x"}
""")
    assert errs == [
        "w.yaml:3: defaults.intervall: unknown key",
        "w.yaml:6: targets[0].timeout: 'abc' is not a duration (write a number of seconds, or 500ms, 10s, 5m, 2h, 7d)",
        "w.yaml:7: targets[1].target: port '' is not a number (a TCP port is 1 to 65535)",
        "w.yaml:8: targets[2].target: this key is required",
        "w.yaml:10: targets[3].http.path: must start with / and hold no spaces or line breaks",
        "w.yaml:11: targets[3].labels: label name 'job' is reserved (used by portdoctor's own metrics)",
        "w.yaml:13: alerts.webhook.url: must be an http:// or https:// URL with a host",
    ]


def test_whole_file_checks_name_their_lines() -> None:
    errs = errors_of("""targets:
  - {target: 127.0.0.1:80, name: web}
  - {target: 127.0.0.1:81, name: web}
  - {target: 127.0.0.1:82, interval: 1s, timeout: 5s}
web:
  listen: 0.0.0.0:9716
""")
    assert errs[0].startswith("w.yaml:3: targets[1]: the name 'web' is used already (line 2)")
    assert errs[1] == "w.yaml:4: targets[2]: timeout 5 s is longer than the interval 1 s"
    assert errs[2].startswith("w.yaml:6: web.listen: 0.0.0.0:9716 is reachable from other hosts, so an access "
                              "token is required")


def test_whole_file_checks_are_listed_with_schema_errors_too() -> None:
    errs = errors_of("""targets:
  - {target: 127.0.0.1:80, name: web}
  - {target: 127.0.0.1:81, name: web, interval: soon}
web: {listen: "0.0.0.0:9716"}
""")
    assert [e.split(": ")[0] + ": " + e.split(": ")[1] for e in errs] == [
        "w.yaml:3: targets[1].interval", "w.yaml:3: targets[1]", "w.yaml:4: web.listen"]


def test_yaml_syntax_error_and_duplicate_keys() -> None:
    assert errors_of("targets:\n  - target: [1\n")[0].startswith("w.yaml:3: not valid YAML")
    errs = errors_of("targets:\n  - target: 127.0.0.1:1\n    target: 127.0.0.1:2\n")
    assert errs == ["w.yaml:3: targets[0].target: this key is given twice"]


def test_token_file_is_read_and_must_exist(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cfg = parse_config(f"targets: [{{target: '127.0.0.1:1'}}]\nweb: {{listen: '[::]:9716', token_file: {token}}}\n")
    assert cfg.web.token() == "s3cret" and not cfg.web.loopback
    errs = errors_of(f"targets: [{{target: '127.0.0.1:1'}}]\nweb: {{token_file: {tmp_path / 'none'}}}\n")
    assert errs[0].startswith("w.yaml:2: web.token_file: cannot read")


def test_unreadable_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.yaml"))
    assert info.value.errors == [f"{tmp_path / 'missing.yaml'}: cannot read the config: No such file or directory"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError):
        load_config(str(empty))


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("10s", 10), ("5m", 300), ("2h", 7200), ("7d", 604800),
                                          (3, 3.0), ("1.5", 1.5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10 parsecs", "", "-1s", 0, True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
