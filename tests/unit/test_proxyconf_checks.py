"""The proxy, mapping and supervisor checks on recorded real cases (rootful Podman 4.3 with
netavark, nginx 1.22, supervisord 4.2, all inside one network namespace), judged again here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portdoctor.checks import Context
from portdoctor.checks.mapping import check_mapping
from portdoctor.checks.mapping import followups as mapping_followups
from portdoctor.checks.proxy import check_proxy
from portdoctor.checks.proxy import followups as proxy_followups
from portdoctor.checks.supervisor import check_supervisor
from portdoctor.hostfacts import SupervisorFacts
from portdoctor.model import Cause, ProbeResult, Severity, Target
from portdoctor.plain import from_plain
from portdoctor.snapshot import Snapshot

REC = Path(__file__).parent.parent / "data" / "proxy" / "recorded"


def _case(name: str) -> tuple[Snapshot, Context]:
    doc = json.loads((REC / f"{name}.json").read_text())
    snap = Snapshot.from_json(doc["snapshot"])
    ctx = Context(target=from_plain(Target, doc["target"]), probe=from_plain(ProbeResult, doc["probe"]),
                  from_addr=doc.get("from_addr"), service=doc.get("service"),
                  followups={k: from_plain(ProbeResult, v) for k, v in (doc.get("followups") or {}).items()})
    return snap, ctx


def _errors(findings):
    return [f for f in findings if f.severity is Severity.ERROR]


def test_nginx_upstream_where_nothing_listens():
    snap, ctx = _case("127_0_0_1_8080")
    assert [(t.host, t.port) for t in proxy_followups(snap, ctx)] == [("127.0.0.1", 9000)]
    (f,) = check_proxy(snap, ctx)
    assert f.cause is Cause.PROXY_UPSTREAM and f.weight == 0.9
    assert "upstream 127.0.0.1:9000 refuses connections: nothing listens on port 9000" in f.summary
    assert "/tmp/pdx/ng/nginx.conf:12" in f.summary
    ev = "\n".join(f.evidence)
    assert "proxy_pass http://127.0.0.1:9000;" in ev
    assert "answered 502 Bad Gateway (Server: nginx/1.22.1)" in ev
    assert "connect() failed (111: Connection refused) while connecting to upstream" in ev
    assert any(x.command == "nginx -s reload -c /tmp/pdx/ng/nginx.conf" for x in f.fix)


def test_published_port_with_app_on_container_loopback():
    snap, ctx = _case("127_0_0_1_18080")
    assert [(t.host, t.port) for t in mapping_followups(snap, ctx)] == [("10.231.7.3", 8080)]
    (f,) = check_mapping(snap, ctx)
    assert f.cause is Cause.WRONG_INTERFACE and f.weight == 0.9
    assert "Container pdxweb publishes 0.0.0.0:18080->8080/tcp" in f.summary
    assert "127.0.0.1:8080 inside the container" in f.summary
    assert "from this host, 10.231.7.3:8080 is refused (ECONNREFUSED)" in f.evidence
    assert f.fix[0].command.endswith("/bin/httpd -f -p 0.0.0.0:8080")


def test_exited_container_with_exit_code_and_logs():
    snap, ctx = _case("127_0_0_1_18081")
    (f,) = _errors(check_mapping(snap, ctx))
    assert f.cause is Cause.SERVICE_NOT_RUNNING and f.weight == 0.85
    assert "pdxexit" in f.summary and "exit code 3" in f.summary
    assert any("fatal: /etc/app.conf missing" in e for e in f.evidence)
    assert [x.command for x in f.fix] == ["podman logs --tail 50 pdxexit", "podman start pdxexit"]


def test_mapping_to_a_container_port_where_nothing_listens():
    snap, ctx = _case("127_0_0_1_18082")
    (f,) = check_mapping(snap, ctx)
    assert f.cause is Cause.PORT_MAPPING
    assert "18082->8080" in f.summary and "listens on port 8081" in f.summary
    assert "-p 18082:8081" in f.fix[0].command


def test_client_uses_the_container_port():
    snap, ctx = _case("127_0_0_1_9090")
    (f,) = check_mapping(snap, ctx)
    assert f.cause is Cause.WRONG_PORT and f.weight == 0.88
    assert "published as port 19090" in f.summary


def test_supervisord_program_that_crashed():
    snap, ctx = _case("127_0_0_1_9300")
    (f,) = _errors(check_supervisor(snap, ctx))
    assert f.cause is Cause.SERVICE_NOT_RUNNING
    assert "supervisord program api crashed (exit status 3)" in f.summary and "FATAL" in f.summary
    assert any("Error: database is not reachable" in e for e in f.evidence)
    assert f.fix[-1].command == "supervisorctl -c /tmp/pdx/sv/supervisord.conf start api"


@pytest.mark.parametrize("name", ["127_0_0_1_8080", "127_0_0_1_18081", "127_0_0_1_9300"])
def test_checks_stay_quiet_when_the_target_accepts(name):
    snap, ctx = _case(name)
    from dataclasses import replace

    from portdoctor.model import State

    ok = replace(ctx, probe=replace(ctx.probe, state=State.OPEN), followups={})
    assert check_mapping(snap, ok) == []
    assert check_supervisor(snap, ok) == []
    assert check_proxy(snap, ok) == []  # no refused upstream known


def test_no_facts_no_findings():
    snap, ctx = _case("127_0_0_1_8080")
    empty = Snapshot()
    assert check_proxy(empty, ctx) == [] and check_mapping(empty, ctx) == [] and check_supervisor(empty, ctx) == []


SYSTEMCTL_SHOW = """Id=billing.service
ActiveState=activating
SubState=auto-restart
Result=exit-code
NRestarts=7
ExecMainStatus=1
ExecMainCode=1
UnitFileState=enabled
ExecStart={ path=/usr/local/bin/billing ; argv[]=/usr/local/bin/billing --port 8085 ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
MainPID=0

Id=cache.service
ActiveState=inactive
SubState=dead
Result=success
NRestarts=0
ExecMainStatus=0
ExecMainCode=0
UnitFileState=disabled
ExecStart={ path=/usr/bin/cache ; argv[]=/usr/bin/cache -p 6390 ; ignore_errors=no }
MainPID=0
"""


def _systemd_case(port: int, service: str | None = None):
    from portdoctor.collectors.supervisors import _unit_record, parse_systemctl_show
    from portdoctor.model import AddressResult, State

    units = [_unit_record(p) for p in parse_systemctl_show(SYSTEMCTL_SHOW)]
    units[0]["journal"] = ["billing: cannot bind: address already in use"]
    snap = Snapshot(supervisors=from_plain(SupervisorFacts, {"systemd": {"units": units}}))
    target = Target(f"127.0.0.1:{port}", "127.0.0.1", port)
    probe = ProbeResult(target, State.REFUSED, (AddressResult("127.0.0.1", 4, State.REFUSED, "ECONNREFUSED", 0.001),), 3.0)
    return snap, Context(target=target, probe=probe, service=service)


def test_systemd_restart_loop_with_journal():
    snap, ctx = _systemd_case(8085)
    (f,) = _errors(check_supervisor(snap, ctx))
    assert f.summary == "systemd unit billing.service is in a restart loop (7 restarts, last exit status 1)."
    assert "ExecStart: /usr/local/bin/billing --port 8085" in f.evidence
    assert "journal: billing: cannot bind: address already in use" in f.evidence
    assert [x.command for x in f.fix] == ["journalctl -u billing.service -n 50 --no-pager",
                                         "systemctl restart billing.service"]


def test_systemd_disabled_unit_named_by_the_user():
    snap, ctx = _systemd_case(6390, service="cache")
    (f,) = _errors(check_supervisor(snap, ctx))
    assert "cache.service is inactive and disabled" in f.summary
    assert f.fix[-1].command == "systemctl enable --now cache.service"


# --------------------------------------------------------------------------- other namespaces, names, sockets


def _with_containers(snap: Snapshot, edit) -> Snapshot:
    """snap with every container record passed through edit(record) (a copy)."""
    import copy

    doc = copy.deepcopy(snap.to_json())
    for c in doc["containers"]["containers"]:
        edit(c)
    return Snapshot.from_json(doc)


def test_containers_of_another_network_namespace_say_nothing():
    snap, ctx = _case("127_0_0_1_18080")
    other = _with_containers(snap, lambda c: c.update(here=False))
    assert check_mapping(other, ctx) == [] and mapping_followups(other, ctx) == []
    here = _with_containers(snap, lambda c: c.update(here=True))
    assert [f.cause for f in check_mapping(here, ctx)] == [Cause.WRONG_INTERFACE]


def test_local_containers_say_nothing_about_a_remote_target():
    from dataclasses import replace

    snap, ctx = _case("127_0_0_1_9090")  # a client used the container port 9090 of pdxconf
    assert [f.cause for f in _errors(check_mapping(snap, ctx))] == [Cause.WRONG_PORT]
    remote = Target("10.99.0.1:9090", "10.99.0.1", 9090)
    addr = replace(ctx.probe.addresses[0], address="10.99.0.1")
    rctx = replace(ctx, target=remote, probe=replace(ctx.probe, target=remote, addresses=(addr,)))
    assert check_mapping(snap, rctx) == [] and mapping_followups(snap, rctx) == []


def test_published_on_another_host_address_names_the_container():
    from dataclasses import replace

    from portdoctor.model import InterfaceAddress

    snap, ctx = _case("127_0_0_1_18080")

    def on_other(c):
        c.update(ports=[dict(p, host_ip="10.231.9.9") for p in c["ports"]])
    snap = _with_containers(snap, on_other)
    snap = replace(snap, listeners=tuple(replace(ln, address="10.231.9.9") if ln.port == 18080 else ln
                                         for ln in snap.listeners),
                   addresses=(*snap.addresses, InterfaceAddress("10.231.9.9", 24, 4, "eth9")))
    (f,) = check_mapping(snap, ctx)
    assert f.cause is Cause.WRONG_INTERFACE and f.weight > 0.9
    assert "pdxweb" in f.summary and "10.231.9.9 only" in f.summary
    cmds = "\n".join(x.command or "" for x in f.fix)
    assert "-p 18080:8080" in cmds and "-p 127.0.0.1:18080:8080" in cmds
    assert any("conmon" in e and "pdxweb" in e for e in f.evidence)


def _named_upstream(snap: Snapshot, host: str) -> Snapshot:
    import copy

    doc = copy.deepcopy(snap.to_json())
    for p in doc["proxies"]["proxies"]:
        for r in p["config"]["routes"]:
            for u in r["upstreams"]:
                u["host"] = host
    return Snapshot.from_json(doc)


def test_upstream_named_by_a_host_name_is_probed_by_name():
    from dataclasses import replace

    snap, ctx = _case("127_0_0_1_8080")
    named = _named_upstream(snap, "app.lab.test")
    (t,) = proxy_followups(named, ctx)
    assert (t.host, t.port) == ("app.lab.test", 9000)
    res = ctx.followups["127.0.0.1:9000"]
    (f,) = check_proxy(named, replace(ctx, followups={"app.lab.test:9000": replace(res, target=t)}))
    assert f.cause is Cause.PROXY_UPSTREAM and f.severity is Severity.ERROR
    assert "app.lab.test:9000" in f.summary and "127.0.0.1" in f.summary
    assert "nothing listens on port 9000" in f.summary
    # a name that does not resolve is the cause itself
    from portdoctor.model import State

    bad = ProbeResult(t, State.DNS_ERROR, (), 3.0, dns_error="[Errno -2] Name or service not known")
    (g,) = check_proxy(named, replace(ctx, followups={"app.lab.test:9000": bad}))
    assert g.cause is Cause.PROXY_UPSTREAM and "does not resolve" in g.summary
    assert any("Name or service not known" in e for e in g.evidence)
    # not probed (a replay without follow-ups): no finding
    assert check_proxy(named, replace(ctx, followups={})) == []


def test_upstream_unix_socket_missing_or_refusing(tmp_path):
    import copy
    import socket
    from dataclasses import replace

    from portdoctor.collectors.proxies import unix_socket_fact

    missing = str(tmp_path / "app.sock")
    assert unix_socket_fact(missing)["state"] == "missing"
    stale = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(stale)  # bound, never listening: what an exited app leaves behind
        assert unix_socket_fact(stale)["state"] == "refused"
        s.listen(1)
        assert unix_socket_fact(stale)["state"] == "ok"

    snap, ctx = _case("127_0_0_1_8080")
    doc = copy.deepcopy(snap.to_json())
    for p in doc["proxies"]["proxies"]:
        for r in p["config"]["routes"]:
            for u in r["upstreams"]:
                u.update(host="", port=None, unix=missing)
        p["unix"] = {missing: unix_socket_fact(missing)}
    usnap = Snapshot.from_json(doc)
    assert proxy_followups(usnap, ctx) == []
    (f,) = check_proxy(usnap, replace(ctx, followups={}))
    assert f.cause is Cause.PROXY_UPSTREAM and missing in f.summary and "does not exist" in f.summary
    assert "/tmp/pdx/ng/nginx.conf:12" in f.summary
