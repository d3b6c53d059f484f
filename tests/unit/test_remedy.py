"""remedy: config edits that keep everything but the value, and the plans made from recorded
diagnoses (tests/data/recordings, real lab cases): which steps, which tool, what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portdoctor.diagnose import replay_recording
from portdoctor.model import Action, ActionKind, Fix
from portdoctor.remedy import actions
from portdoctor.remedy.configedit import EditError, edit_line, edit_text, unified_diff, wide_value, with_port
from portdoctor.remedy.plan import build_plan

REC = Path(__file__).resolve().parents[1] / "data" / "recordings"


def plan_of(name: str):
    return build_plan(replay_recording(json.loads((REC / name).read_text())))


# --------------------------------------------------------------------------- configedit


@pytest.mark.parametrize("line,key,old,new,want", [
    ("bind 127.0.0.1 -::1\n", "bind", "127.0.0.1 -::1", "* -::*", "bind * -::*\n"),
    ("listen_addresses = 'localhost'\t\t# comma-separated\n", "listen_addresses", "localhost", "*",
     "listen_addresses = '*'\t\t# comma-separated\n"),
    ("listen_addresses = \"localhost\"\r\n", "listen_addresses", "localhost", "*", "listen_addresses = \"*\"\r\n"),
    ("bind-address            = 127.0.0.1\n", "bind-address", "127.0.0.1", "0.0.0.0",
     "bind-address            = 0.0.0.0\n"),
    ("  bindIp: 127.0.0.1  # local only\n", "bindIp", "127.0.0.1", "0.0.0.0", "  bindIp: 0.0.0.0  # local only\n"),
    ("        listen 127.0.0.1:8080 default_server;   # note\n", "listen", "127.0.0.1:8080 default_server",
     "8080 default_server", "        listen 8080 default_server;   # note\n"),
    ("port 6380", "port", "6380", "6379", "port 6379"),
])
def test_edit_line_changes_only_the_value(line: str, key: str, old: str, new: str, want: str) -> None:
    assert edit_line(line, key, old, new) == want


def test_edit_line_refuses_a_line_without_the_value() -> None:
    with pytest.raises(EditError):
        edit_line("bind 0.0.0.0\n", "bind", "127.0.0.1", "*")


def test_edit_text_keeps_every_other_byte_and_finds_a_moved_line() -> None:
    text = "# top\ninclude /etc/redis/more.conf\n\nbind 127.0.0.1\nport 6379\n"
    out = edit_text(text, 4, "bind", "127.0.0.1", "* -::*")
    assert out == text.replace("bind 127.0.0.1", "bind * -::*")
    moved = "# a new first line\n" + text  # the reported line number is stale: the same text is found
    assert edit_text(moved, 4, "bind", "127.0.0.1", "*", "bind 127.0.0.1") == moved.replace("bind 127.0.0.1", "bind *")
    with pytest.raises(EditError):
        edit_text("bind 127.0.0.1\nbind 127.0.0.1\n", 9, "bind", "127.0.0.1", "*", "bind 127.0.0.1")


def test_unified_diff() -> None:
    d = unified_diff("/etc/x.conf", "a\nbind 1\nc\n", "a\nbind 2\nc\n")
    assert d.startswith("--- /etc/x.conf\n+++ /etc/x.conf (fixed)\n") and "-bind 1\n+bind 2\n" in d


@pytest.mark.parametrize("service,old,fam,want", [
    ("redis", "127.0.0.1 -::1", "0.0.0.0", "* -::*"),
    ("postgresql", "localhost", "0.0.0.0", "*"),
    ("nginx", "127.0.0.1:8080", "0.0.0.0", "8080"),
    ("nginx", "[::1]:8080 ipv6only=on", "::", "[::]:8080 ipv6only=on"),
    ("haproxy", "127.0.0.1:80", "0.0.0.0", "*:80"),
    ("apache", "127.0.0.1:80", "0.0.0.0", "0.0.0.0:80"),
])
def test_wide_value(service: str, old: str, fam: str, want: str) -> None:
    assert wide_value(service, old, fam) == want


def test_with_port() -> None:
    assert with_port("nginx", "127.0.0.1:8081 default_server", 8081, 8080) == "127.0.0.1:8080 default_server"
    with pytest.raises(EditError):
        with_port("redis", "6380", 16380, 6379)


# --------------------------------------------------------------------------- the JSON


def test_every_fix_has_an_action_and_the_old_keys_stay() -> None:
    plain = Fix("read the log", "journalctl -u x").to_json()
    assert plain["description"] == "read the log" and plain["command"] == "journalctl -u x"
    assert plain["action"]["kind"] == "manual" and plain["action"]["automatic"] is False
    a = Action(ActionKind.SYSCTL, "raise it", argv=("sysctl", "-w", "a=1"), undo="sysctl -w a=0", key="a", new="1")
    doc = Fix("x", None, a).to_json()["action"]
    assert doc["automatic"] is True and doc["argv"] == ["sysctl", "-w", "a=1"] and "path" not in doc


def test_ssh_port_from_the_environment() -> None:
    assert actions.ssh_port({"SSH_CONNECTION": "10.0.0.9 51000 10.0.0.2 22"}) == 22
    assert actions.ssh_port({}) is None


# --------------------------------------------------------------------------- plans of recorded cases


def test_iptables_reject_gets_an_insert_scoped_to_the_client_with_its_undo() -> None:
    p = plan_of("firewall_lab--test_reject_tcp_reset_on_input.json")
    (step,) = p.steps
    assert step.kind is ActionKind.FIREWALL_RULE and step.tool == "iptables"
    assert step.argv[:4] == ("iptables", "-w", "-I", "INPUT")
    assert step.undo is not None and " -D INPUT " in step.undo and "-j ACCEPT" in step.undo
    assert step.persist and "iptables-save" in step.persist


def test_ufw_reject_is_fixed_with_ufw() -> None:
    (step,) = plan_of("more_faults--test_ufw_reject_rule.json").steps
    assert step.argv[:6] == ("ufw", "insert", "1", "allow", "from", "10.0.0.1")
    assert step.undo and step.undo.startswith("ufw delete allow from 10.0.0.1")


def test_nft_reject_is_inserted_before_the_rule_by_handle() -> None:
    (step,) = plan_of("more_faults--test_nft_ip_family_set_of_blocked_ports.json").steps
    assert step.tool == "nft" and "position" in step.argv and step.argv[-1] == "accept"


def test_kube_proxy_rules_are_refused() -> None:
    p = plan_of("firewall_lab--test_kube_proxy_style_rules.json")
    assert not p.steps and any("kube-proxy" in (a.refused or "") for a in p.refused)


def test_redis_config_bind_is_edited_then_restarted_by_hand() -> None:
    p = plan_of(next(x.name for x in REC.glob("more_faults--test_redis_with_its_own_config_file*")))
    edit, again = p.steps
    assert edit.kind is ActionKind.EDIT_SETTING and edit.key == "bind" and edit.new == "* -::*"
    assert edit.exposes and "every network" in edit.exposes
    assert again.kind is ActionKind.RESTART and again.tool == "respawn" and again.path == edit.path
    assert any("requirepass" in a.changes for a in p.refused)


def test_redis_bound_on_its_command_line_changes_at_run_time() -> None:
    (step,) = plan_of("more_faults--test_redis_bound_to_loopback_by_its_command_line.json").steps
    assert step.tool == "redis-cli" and step.argv[-3:] == ("SET", "bind", "* -::*")
    assert step.undo and step.undo.endswith("CONFIG SET bind 127.0.0.1")


def test_bind_chosen_by_the_program_itself_is_refused() -> None:
    p = plan_of("more_faults--test_gunicorn_bound_to_loopback_on_its_command_line.json")
    assert not p.steps and p.refused


def test_wrong_port_without_service_is_a_choice() -> None:
    p = plan_of("more_faults--test_postgres_on_a_non_standard_port_in_its_config.json")
    assert not p.steps and "your choice" in (p.refused[0].refused or "")


def test_wrong_port_with_service_moves_the_server() -> None:
    p = plan_of("diagnose_lab--test_service_on_another_port_named_with_service.json")
    assert p.steps or p.refused  # the named service's own port setting, or why it cannot move


def test_stopped_supervisord_program_is_started_with_its_undo() -> None:
    (step,) = plan_of("supervisor_lab--test_stopped_program_with_autostart_false.json").steps
    assert step.kind is ActionKind.START and step.argv[0] == "supervisorctl" and step.argv[-2:] == ("start", "idle")
    assert step.undo and step.undo.endswith("stop idle")


def test_somaxconn_without_a_restartable_server_changes_nothing() -> None:
    """Raising the cap helps only once the server listens again; a bare process cannot be restarted."""
    p = plan_of("more_faults--test_somaxconn_caps_the_backlog.json")
    assert not p.steps
    assert any(a.kind is ActionKind.SYSCTL for a in p.refused) and any(a.kind is ActionKind.RESTART for a in p.refused)


def test_stopped_process_is_resumed() -> None:
    (step,) = plan_of("more_faults2--test_stopped_redis_fills_its_accept_queue.json").steps
    assert step.argv[:2] == ("kill", "-CONT") and step.undo and step.undo.startswith("kill -STOP")


def test_syn_cookies_are_turned_back_on() -> None:
    (step,) = plan_of("more_faults--test_syn_queue_full_without_syncookies.json").steps
    assert step.kind is ActionKind.SYSCTL and step.key == "net.ipv4.tcp_syncookies" and step.new == "1"


def test_fd_limit_is_raised() -> None:
    (step,) = plan_of("more_faults2--test_nginx_at_its_worker_rlimit_nofile.json").steps
    assert step.kind is ActionKind.FD_LIMIT and step.argv[0] == "prlimit" and step.undo


def test_working_target_has_nothing_to_fix() -> None:
    p = plan_of("diagnose_lab--test_working_service_is_ok.json")
    assert not p.steps and p.note.startswith("the target accepts")


def test_diagnosis_json_carries_actions() -> None:
    d = replay_recording(json.loads((REC / "firewall_lab--test_reject_tcp_reset_on_input.json").read_text()))
    fixes = [x for f in d.to_json()["findings"] for x in f["fix"]]
    assert all("action" in x and "description" in x and "command" in x for x in fixes)
    assert any(x["action"]["kind"] == "firewall_rule" and x["action"]["automatic"] for x in fixes)


def test_a_firewall_change_on_the_ssh_sessions_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule of the recorded case blocks port 8080; a session on 8080 must not see it changed."""
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 50000 10.0.0.2 8080")
    p = plan_of("firewall_lab--test_reject_tcp_reset_on_input.json")
    assert not p.steps and "SSH connection" in (p.refused[0].refused or "")
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 50000 10.0.0.2 22")
    assert plan_of("firewall_lab--test_reject_tcp_reset_on_input.json").steps


def test_append_setting() -> None:
    from portdoctor.remedy.configedit import append_setting

    assert append_setting("port = 5432", "listen_addresses = '*'") == "port = 5432\nlisten_addresses = '*'\n"
    assert append_setting("a\n", "b") == "a\nb\n"


# --------------------------------------------------------------------------- command line


def _cli(*args: str, env: dict[str, str] | None = None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "portdoctor", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_fix_bad_input_is_one_line_and_exit_2() -> None:
    cp = _cli("fix")
    assert cp.returncode == 2 and cp.stderr.count("\n") == 1 and "TARGET" in cp.stderr, cp.stderr
    cp = _cli("fix", "--undo", "127.0.0.1:1")
    assert cp.returncode == 2 and cp.stderr.count("\n") == 1, cp.stderr
    cp = _cli("fix", "127.0.0.1:1", "--from", "not-an-address")
    assert cp.returncode == 2 and cp.stderr.count("\n") == 1, cp.stderr


def test_undo_with_nothing_journaled(tmp_path: Path) -> None:
    import os

    if os.geteuid() != 0:
        cp = _cli("fix", "--undo", "--json", env={"PORTDOCTOR_STATE_DIR": str(tmp_path)})
        assert cp.returncode == 3 and "root" in cp.stderr
        return
    cp = _cli("fix", "--undo", "--json", env={"PORTDOCTOR_STATE_DIR": str(tmp_path)})
    assert cp.returncode == 1 and json.loads(cp.stdout)["status"] == "nothing_to_undo", cp.stdout + cp.stderr
