"""Forwarder command lines and configurations (forwardspec), the forwarder check on snapshots, the
port map's `via` for a forwarder, and the snapshot round trip of the forwarder facts.

Command lines are as the tools' manuals write them: socat(1) EXAMPLES, ssh(1) -L/-R, Docker's
userland proxy as dockerd starts it (libnetwork portmapper, `docker-proxy -proto tcp -host-ip ...`),
kubectl port-forward --help, systemd-socket-proxyd(8) and rinetd(8).
"""

from __future__ import annotations

from portdoctor import forwardspec as fs
from portdoctor.checks import Context
from portdoctor.checks.forwarder import check_forwarder
from portdoctor.hostfacts import (
    BackendProbe, Container, ContainerFacts, Forwarder, ForwarderFacts, ForwardTarget, NetnsListener,
)
from portdoctor.model import AddressResult, Cause, InterfaceAddress, Listener, ProbeResult, Process, State, Target
from portdoctor.portmap import build
from portdoctor.probe import CLOSED_AT_ONCE, Attempt, accepted_then_closed, count_drops, merge_attempts
from portdoctor.snapshot import Snapshot


# --------------------------------------------------------------------------- parsers

def test_socat_forms() -> None:
    f = fs.socat(("socat", "TCP-LISTEN:8080,fork,reuseaddr", "TCP:localhost:9001"))[0]
    assert (f.listen_port, f.listen_address, f.target.host, f.target.port) == (8080, None, "localhost", 9001)
    f = fs.socat(("socat", "-d", "-d", "-lf", "/tmp/s.log", "tcp4-l:80,bind=10.0.0.2,fork", "TCP4-CONNECT:10.0.1.2:8080"))[0]
    assert (f.listen_port, f.listen_address, f.target.host, f.target.port) == (80, "10.0.0.2", "10.0.1.2", 8080)
    f = fs.socat(("socat", "TCP6:[::1]:9001,connect-timeout=1", "TCP6-LISTEN:8443,ipv6only=1"))[0]  # either order
    assert (f.listen_port, f.target.host, f.target.port) == (8443, "::1", 9001)
    f = fs.socat(("socat", "TCP-LISTEN:8080,fork", "UNIX-CONNECT:/run/app.sock"))[0]
    assert f.target.unix == "/run/app.sock"
    assert fs.socat(("socat", "-", "TCP:10.0.0.2:80")) == []  # a client, not a forwarder
    assert fs.socat(("socat", "STDIO", "EXEC:/bin/sh")) == []


def test_ssh_forms() -> None:
    f = fs.ssh(("ssh", "-fNL", "8080:127.0.0.1:9001", "-p", "2222", "deploy@db.example"))[0]
    assert (f.listen_port, f.target.host, f.target.port, f.direction) == (8080, "127.0.0.1", 9001, "remote-end")
    assert (f.via, f.via_host, f.via_port) == ("deploy@db.example:2222", "db.example", 2222)
    f = fs.ssh(("ssh", "-N", "-L", "[::1]:5432:[fd00::5]:5432", "ssh://10.0.1.2:2200"))[0]
    assert (f.listen_address, f.listen_port, f.target.host, f.via_port) == ("::1", 5432, "fd00::5", 2200)
    f = fs.ssh(("ssh", "-o", "LocalForward=6000 localhost:6379", "-l", "ops", "10.0.1.2"))[0]
    assert (f.listen_port, f.target.host, f.target.port, f.via) == (6000, "localhost", 6379, "ops@10.0.1.2:22")
    f = fs.ssh(("ssh", "-N", "-R", "0.0.0.0:8080:127.0.0.1:3000", "tunnel@gw"))[0]
    assert (f.listen_port, f.direction, f.target.port) == (8080, "client-end", 3000)
    f = fs.ssh(("ssh", "-L", "8080:/run/app.sock", "h"))[0]
    assert f.target.unix == "/run/app.sock"
    assert fs.ssh(("ssh", "-i", "/k", "host", "uptime")) == []


def test_docker_proxy_kubectl_systemd_rinetd() -> None:
    f = fs.docker_proxy(("/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
                         "-container-ip", "172.17.0.2", "-container-port", "80"))[0]
    assert (f.listen_port, f.listen_address, f.target.host, f.target.port) == (8080, "0.0.0.0", "172.17.0.2", 80)
    assert fs.docker_proxy(("docker-proxy", "-proto", "udp", "-container-ip", "1.2.3.4")) == []
    ks = fs.kubectl(("kubectl", "-n", "shop", "port-forward", "--address", "0.0.0.0", "deployment/web", "8080:80", "9090"))
    assert [(k.listen_port, k.target.port, k.via, k.listen_address) for k in ks] == [
        (8080, 80, "deployment/web -n shop", "0.0.0.0"), (9090, 9090, "deployment/web -n shop", "0.0.0.0")]
    assert fs.kubectl(("kubectl", "port-forward", "web", ":5000"))[0].target.host == "pod/web"
    assert fs.kubectl(("kubectl", "get", "pods")) == []
    f = fs.systemd_socket_proxyd(("/lib/systemd/systemd-socket-proxyd", "--exit-idle-time=5min", "127.0.0.1:9001"))[0]
    assert (f.listen_port, f.target.host, f.target.port) == (None, "127.0.0.1", 9001)
    f = fs.systemd_socket_activate(("systemd-socket-activate", "-l", "8080", "/lib/systemd/systemd-socket-proxyd",
                                    "[::1]:9001"))[0]
    assert (f.listen_port, f.target.host, f.target.port) == (8080, "::1", 9001)
    conf = ("# rinetd.conf\nlogfile /var/log/rinetd.log\nallow 10.0.0.*\n0.0.0.0 8080 127.0.0.1 9001\n"
            "10.0.0.2  443/tcp  10.0.1.2 8443/tcp  [timeout=60]\n0.0.0.0 53/udp 10.0.0.53 53/udp\n")
    rs = fs.rinetd_conf(conf, "/etc/rinetd.conf")
    assert [(r.listen_address, r.listen_port, r.target.host, r.target.port, r.line) for r in rs] == [
        ("0.0.0.0", 8080, "127.0.0.1", 9001, 4), ("10.0.0.2", 443, "10.0.1.2", 8443, 5)]
    assert fs.rinetd_config_path(("rinetd", "-f", "-c", "/srv/r.conf")) == "/srv/r.conf"
    assert fs.program_kind(("/usr/bin/socat", "x"), "socat") == "socat"
    assert fs.program_kind(("python3", "app.py"), "python3") is None


# --------------------------------------------------------------------------- the check

def _probe(port: int, detail: str | None = CLOSED_AT_ONCE, state: State = State.OPEN) -> ProbeResult:
    return ProbeResult(Target(f"10.0.0.2:{port}", "10.0.0.2", port), state,
                       (AddressResult("10.0.0.2", 4, state, None, 0.001, detail=detail),), 3.0)


def _snap(fw: Forwarder, **more) -> Snapshot:
    return Snapshot(
        listeners=(Listener(fw.address, fw.port, 4, pids=(fw.pid,)),),
        processes={fw.pid: Process(fw.pid, fw.program, (fw.program,))},
        addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"),),
        forwarders=ForwarderFacts((fw,)), **more)


def test_docker_proxy_in_front_of_an_app_on_the_container_loopback() -> None:
    t = ForwardTarget("172.17.0.2", 80, text="172.17.0.2:80",
                      probes=(BackendProbe("172.17.0.2", "refused", "ECONNREFUSED"),))
    fw = Forwarder("docker-proxy", 4242, "docker-proxy", "0.0.0.0", 8080, targets=(t,),
                   text="-host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80")
    web = Container("abc123", "web", state="running", addresses=("172.17.0.2",), here=True,
                    listeners=(NetnsListener("127.0.0.1", 80),), cmd=("python3", "-m", "http.server", "80")),
    snap = _snap(fw, containers=ContainerFacts(engine="docker", containers=web))
    (f,) = check_forwarder(snap, Context(Target("10.0.0.2:8080", "10.0.0.2", 8080), _probe(8080)))
    assert f.cause is Cause.WRONG_INTERFACE and "docker-proxy (pid 4242)" in f.summary and "web" in f.summary
    assert any("0.0.0.0:80" in x.description for x in f.fix)


def test_kubectl_port_forward_says_what_to_check() -> None:
    t = ForwardTarget("deployment/web", 80, text="8080:80", side="cluster")
    fw = Forwarder("kubectl", 77, "kubectl", "127.0.0.1", 8080, targets=(t,), text="port-forward deployment/web 8080:80",
                   via="deployment/web -n shop")
    snap = _snap(fw)
    ctx = Context(Target(":8080", "127.0.0.1", 8080), _probe(8080))
    (f,) = check_forwarder(snap, ctx)
    assert f.cause is Cause.PROXY_UPSTREAM and "port 80 of deployment/web" in f.summary
    assert any(x.command == "kubectl get deployment/web -n shop -o wide" for x in f.fix)
    # accepted and kept open: a working port-forward raises nothing
    assert check_forwarder(snap, Context(Target(":8080", "127.0.0.1", 8080), _probe(8080, detail=None))) == []


def test_working_forwarder_and_an_unknown_one() -> None:
    t = ForwardTarget("127.0.0.1", 9001, text="TCP:127.0.0.1:9001", probes=(BackendProbe("127.0.0.1", "open"),))
    fw = Forwarder("socat", 5, "socat", "0.0.0.0", 8080, targets=(t,), text="TCP-LISTEN:8080 TCP:127.0.0.1:9001")
    assert check_forwarder(_snap(fw), Context(Target("10.0.0.2:8080", "10.0.0.2", 8080), _probe(8080, None))) == []
    # no forwarder known, but the server drops what it accepts: never ok
    snap = Snapshot(listeners=(Listener("0.0.0.0", 8080, 4, pids=(9,)),), processes={9: Process(9, "gatekeeper")},
                    addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"),))
    (f,) = check_forwarder(snap, Context(Target("10.0.0.2:8080", "10.0.0.2", 8080), _probe(8080)))
    assert f.cause is Cause.UNKNOWN and f.severity.value == "error" and "gatekeeper" in f.summary


def test_probe_attempts_count_the_drops() -> None:
    tries = [Attempt("10.0.0.2", 4, State.OPEN, None, 0.001, CLOSED_AT_ONCE) for _ in range(2)]
    tries.append(Attempt("10.0.0.2", 4, State.OPEN, None, 0.001))
    a = count_drops(merge_attempts(tries), tries)
    assert a.detail == f"{CLOSED_AT_ONCE} (2 of 3 attempts)"
    r = ProbeResult(Target(":1", "10.0.0.2", 1), State.OPEN, (a,), 1.0)
    assert accepted_then_closed(r) == [a]


def test_port_map_via_and_snapshot_round_trip() -> None:
    t = ForwardTarget("127.0.0.1", 9001, text="TCP:127.0.0.1:9001")
    fw = Forwarder("socat", 5, "socat", "0.0.0.0", 8080, targets=(t,), text="TCP-LISTEN:8080 TCP:127.0.0.1:9001")
    snap = Snapshot(listeners=(Listener("0.0.0.0", 8080, 4, pids=(5,)), Listener("127.0.0.1", 9001, 4, pids=(6,))),
                    processes={5: Process(5, "socat", ("socat",)), 6: Process(6, "app", ("app",))},
                    forwarders=ForwarderFacts((fw,)))
    doc = build(snap)
    app = next(e for e in doc["listeners"] if e["port"] == 9001)
    assert app["via"] == [{"kind": "proxy", "from": "0.0.0.0:8080",
                           "detail": "socat (pid 5) forwards to 127.0.0.1:9001: TCP:127.0.0.1:9001"}]
    assert Snapshot.from_json(snap.to_json()) == snap


def test_the_backend_namespace_is_the_neighbour_among_namespaces_with_the_same_address() -> None:
    from portdoctor.collectors.forwarders import _pick, parse_arp_macs

    arp = ("IP address       HW type     Flags       HW address            Mask     Device\n"
           "10.0.1.1         0x1         0x2         aa:bb:cc:00:00:01     *        veth1\n"
           "10.0.1.9         0x1         0x0         00:00:00:00:00:00     *        veth1\n")
    assert parse_arp_macs(arp) == {"aa:bb:cc:00:00:01"}
    ours = {"aa:bb:cc:00:00:01"}
    assert _pick([("1", set(), "lone")], ours) == "lone"
    assert _pick([("1", set(), "decoy"), ("2", parse_arp_macs(arp), "b")], ours) == "b"
    assert _pick([("1", set(), "x"), ("2", set(), "y")], ours) is None  # cannot tell: claim none


def test_rootlessport_in_front_of_an_app_on_the_container_loopback() -> None:
    from portdoctor.hostfacts import PortPublish

    web = (Container("abc123", "web", state="running", addresses=("10.0.2.100",), here=True,
                     ports=(PortPublish("0.0.0.0", 8080, 80),), listeners=(NetnsListener("127.0.0.1", 80),)),)
    snap = Snapshot(listeners=(Listener("0.0.0.0", 8080, 4, pids=(31,)),),
                    processes={31: Process(31, "rootlessport", ("rootlessport",))},
                    addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"),),
                    containers=ContainerFacts(engine="podman", containers=web))
    (f,) = check_forwarder(snap, Context(Target("10.0.0.2:8080", "10.0.0.2", 8080), _probe(8080)))
    assert f.cause is Cause.WRONG_INTERFACE and "rootlessport (pid 31)" in f.summary and "web" in f.summary


def test_haproxy_tcp_and_nginx_stream_routes_are_forwarders() -> None:
    from portdoctor.hostfacts import ProxyFacts, ProxyInstance
    from portdoctor.proxyconf import haproxy, nginx

    cfg = haproxy.parse_many([("/etc/haproxy/haproxy.cfg", "defaults\n    mode tcp\n\nlisten pg\n    bind *:5432\n"
                                                           "    server db1 127.0.0.1:6432\n")])
    dump = ("# configuration file /etc/nginx/nginx.conf:\nevents {}\nstream {\n    server {\n        listen 6379;\n"
            "        proxy_pass 127.0.0.1:6380;\n    }\n}\n")
    ncfg = nginx.parse_dump(dump)
    for kind, conf, port, up in (("haproxy", cfg, 5432, 6432), ("nginx", ncfg, 6379, 6380)):
        snap = Snapshot(listeners=(Listener("0.0.0.0", port, 4, pids=(7,)), Listener("127.0.0.1", up + 1, 4, pids=(8,))),
                        processes={7: Process(7, kind, (kind,)), 8: Process(8, "app", ("app",))},
                        addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"),),
                        proxies=ProxyFacts((ProxyInstance(kind, 7, "files", conf),)))
        refused = ProbeResult(Target(f"127.0.0.1:{up}", "127.0.0.1", up), State.REFUSED,
                              (AddressResult("127.0.0.1", 4, State.REFUSED, "ECONNREFUSED", 0.0001),), 3.0)
        ctx = Context(Target(f"10.0.0.2:{port}", "10.0.0.2", port), _probe(port),
                      followups={f"127.0.0.1:{up}": refused})
        (f,) = check_forwarder(snap, ctx)
        assert f.cause is Cause.WRONG_PORT and f"127.0.0.1:{up}" in f.summary, f.summary
        assert any(f"127.0.0.1:{up + 1}" in (x.command or "") for x in f.fix), f.fix  # the config line rewritten
