"""Accepted, then closed: real TCP forwarders in namespaces whose backend refuses.

socat, an `ssh -L` tunnel through Debian's OpenSSH (its own sshd in the backend namespace, with
host key, client key and config in a temporary folder; the machine's /etc/ssh and ~/.ssh are
never read), Debian's rinetd (own configuration file, in the foreground), HAProxy in `mode tcp`
(the suite's nginx-light has no stream module), systemd-socket-proxyd, and socat in front of a
Podman container whose app listens on the container's loopback. Each diagnosis names the
forwarder, its backend and the backend's own cause; the same forwarder with a working backend
stays `ok`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from faults import tmpdir  # noqa: F401  (fixture)
from netlab import Host, Lab
from servers import backend, need, sshd_privsep
from verdicts import brief, diagnose, everything, finding, text_of, verdict



def dropped(c: Host, address: str = "10.0.0.2", port: int = 8080) -> dict:
    """A real client's probe: accepted, then closed (or reset) by the forwarder, every time."""
    _rc, doc = c.json_of("probe", f"{address}:{port}", "--attempts", "3")
    a = doc["addresses"][0]
    assert a.get("detail", "").startswith(("accepted, then closed", "the connection was accepted and then reset")), doc
    assert "3 of 3" in a["detail"], doc
    return doc


def test_socat_to_a_dead_port_then_working(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("socat")
    c, s = pair
    s.start(["socat", "TCP-LISTEN:8080,fork,reuseaddr", "TCP:127.0.0.1:9001,connect-timeout=2"], ready_port=8080)
    dropped(c)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    f = finding(doc, "service_not_running")
    t = text_of(f)
    assert f["check"] == "forwarder" and "socat" in f["summary"] and "127.0.0.1:9001" in f["summary"], t
    assert "nothing listens on port 9001" in f["summary"], t
    assert "TCP:127.0.0.1:9001" in t, t
    # the backend comes up: the same forwarder is ok
    s.listen(9001, "127.0.0.1", argv0="billing-api")
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "ok")


def test_socat_to_a_name_that_does_not_resolve(pair: tuple[Host, Host]) -> None:
    need("socat", "dnsmasq")
    c, s = pair
    s.dns({"db.lab.test": "127.0.0.1"})  # any other name: NXDOMAIN, from s's own resolver
    s.start(["socat", "TCP-LISTEN:8080,fork,reuseaddr", "TCP:dbb.lab.test:5432"], ready_port=8080)
    dropped(c)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "dns")
    t = text_of(finding(doc, "dns"))
    assert "socat" in t and "dbb.lab.test" in t and "does not resolve" in t, t


def test_socat_to_the_address_while_the_app_is_on_loopback(pair: tuple[Host, Host]) -> None:
    need("socat")
    c, s = pair
    s.add_addr("10.0.0.9/32")
    s.listen(9001, "127.0.0.1", argv0="billing-api")
    s.start(["socat", "-d", "TCP4-LISTEN:8080,bind=10.0.0.2,fork", "TCP4:10.0.0.9:9001"], ready_port=8080,
            ready_address="10.0.0.2")
    dropped(c)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_interface")
    t = text_of(finding(doc, "wrong_interface"))
    assert "socat" in t and "10.0.0.9:9001" in t and "127.0.0.1:9001" in t and "billing-api" in t, t
    # the fix on the forwarder's side: its target rewritten
    assert "TCP4:127.0.0.1:9001" in t, t


@pytest.fixture
def sshd_in_b(lab: Lab, tmpdir: Path) -> Iterator[tuple[Host, Host, Host, Path]]:
    """c - s - b; Debian's sshd in b (10.0.1.2:22) with its own config, host key and client key."""
    need("/usr/sbin/sshd", "ssh", "ssh-keygen")
    sshd_privsep()
    try:
        c, s = lab.pair()
        b = backend(lab, s)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "portdoctor-test", "-f",
                            str(tmpdir / name)], check=True, capture_output=True)
        (tmpdir / "authorized_keys").write_text((tmpdir / "client_key.pub").read_text())
        conf = tmpdir / "sshd_config"
        conf.write_text(f"Port 22\nListenAddress 10.0.1.2\nHostKey {tmpdir}/host_key\nPidFile none\n"
                        f"AuthorizedKeysFile {tmpdir}/authorized_keys\nPermitRootLogin prohibit-password\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                        "AllowTcpForwarding yes\n")
        b.start(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], ready_port=22, ready_address="10.0.1.2")
        yield c, s, b, tmpdir
    finally:
        lab.teardown()


def test_ssh_tunnel_whose_far_end_refuses(sshd_in_b: tuple[Host, Host, Host, Path]) -> None:
    c, s, b, d = sshd_in_b
    s.start(["ssh", "-F", "/dev/null", "-i", str(d / "client_key"), "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
             "-o", "ExitOnForwardFailure=yes", "-N", "-L", "0.0.0.0:8080:127.0.0.1:9001", "root@10.0.1.2"],
            ready_port=8080, env={"SSH_AUTH_SOCK": ""})
    dropped(c)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    f = finding(doc, "service_not_running")
    t = text_of(f)
    assert "ssh" in f["summary"] and "127.0.0.1:9001" in f["summary"] and "root@10.0.1.2:22" in f["summary"], t
    assert "nothing listens on port 9001" in f["summary"] and b.ns in t, t  # probed from b's namespace
    # the far end's app listens on b's loopback: the tunnel works
    b.listen(9001, "127.0.0.1", argv0="billing-api")
    assert c.connect_errno("10.0.0.2", 8080) == 0
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "ok")


def test_ssh_tunnel_that_the_server_does_not_allow(sshd_in_b: tuple[Host, Host, Host, Path]) -> None:
    """The app at the far end is fine, but the ssh server only permits another forwarding."""
    c, s, b, d = sshd_in_b
    b.listen(9001, "127.0.0.1", argv0="billing-api")
    s.start(["ssh", "-F", "/dev/null", "-i", str(d / "client_key"), "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
             "-N", "-L", "0.0.0.0:8080:127.0.0.1:9001", "root@10.0.1.2"], ready_port=8080, env={"SSH_AUTH_SOCK": ""})
    (d / "authorized_keys").write_text('permitopen="127.0.0.1:9999" ' + (d / "client_key.pub").read_text())
    s.start(["ssh", "-F", "/dev/null", "-i", str(d / "client_key"), "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
             "-N", "-L", "0.0.0.0:8081:127.0.0.1:9001", "root@10.0.1.2"], ready_port=8081, env={"SSH_AUTH_SOCK": ""})
    dropped(c, port=8081)
    doc = diagnose(s, "10.0.0.2:8081", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    t = text_of(finding(doc, "proxy_upstream"))
    assert "ssh" in t and "PermitOpen" in t and "127.0.0.1:9001" in t, t
    verdict(diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1"), "ok")  # the first key's tunnel works


def test_ssh_reverse_tunnel_whose_client_side_refuses(sshd_in_b: tuple[Host, Host, Host, Path]) -> None:
    """`ssh -R` from s: b's sshd listens, s (the client's namespace) connects to the backend."""
    _c, s, b, d = sshd_in_b
    s.listen(9001, "10.0.1.1", argv0="billing-api")  # on s's link address only, not its loopback
    s.start(["ssh", "-F", "/dev/null", "-i", str(d / "client_key"), "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
             "-o", "ExitOnForwardFailure=yes", "-N", "-R", "8080:127.0.0.1:9001", "root@10.0.1.2"],
            env={"SSH_AUTH_SOCK": ""})
    b.wait_port(8080, "127.0.0.1")
    dropped(b, "127.0.0.1")
    doc = diagnose(b, "127.0.0.1:8080")
    verdict(doc, "wrong_interface")
    t = text_of(finding(doc, "wrong_interface"))
    assert "ssh" in t and "-R 8080:127.0.0.1:9001" in t and "10.0.1.1:9001" in t and s.ns in t, t


def test_socat_to_a_backend_namespace(lab: Lab) -> None:
    """socat in s forwards to b (10.0.1.2:9001): nothing there, then loopback only, then a firewall."""
    need("socat", "iptables")
    c, s = lab.pair()
    b = backend(lab, s)
    # a namespace elsewhere on the machine with the same address (another lab, a container network)
    decoy = lab.host("d")
    decoy.run(["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
    decoy.run(["ip", "link", "set", "d1", "up"])
    decoy.run(["ip", "link", "set", "d0", "up"])
    decoy.add_addr("10.0.1.2/24", "d0")
    decoy.listen(9001, "0.0.0.0", argv0="decoy")
    s.start(["socat", "TCP-LISTEN:8080,fork,reuseaddr", "TCP:10.0.1.2:9001"], ready_port=8080)
    dropped(c)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    assert "nothing listens on port 9001" in doc["verdict"]["summary"] and b.ns in doc["verdict"]["summary"], brief(doc)
    app = b.listen(9001, "127.0.0.1", argv0="billing-api")
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_interface")
    assert "127.0.0.1:9001" in doc["verdict"]["summary"], brief(doc)
    app.kill()
    app.wait()
    b.listen(9001, "0.0.0.0", argv0="billing-api")
    b.iptables("-A", "INPUT", "-p", "tcp", "--dport", "9001", "-j", "REJECT", "--reject-with", "tcp-reset")
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "firewall_reject")
    assert "firewall" in doc["verdict"]["summary"] and "socat" in doc["verdict"]["summary"], brief(doc)
    b.iptables("-R", "INPUT", "1", "-p", "tcp", "--dport", "9001", "-j", "DROP")
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "firewall_drop")
    assert "does not answer" in doc["verdict"]["summary"] and b.ns in doc["verdict"]["summary"], brief(doc)


def test_rinetd_to_a_neighbouring_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("rinetd")
    c, s = pair
    s.listen(9002, "127.0.0.1", argv0="billing-api")
    conf = tmpdir / "rinetd.conf"
    conf.write_text("# forwarded ports\n0.0.0.0 8080 127.0.0.1 9001\n")
    s.start(["rinetd", "-f", "-c", str(conf)], ready_port=8080)
    dropped(c)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_port")
    t = text_of(finding(doc, "wrong_port"))
    assert "rinetd" in t and "127.0.0.1:9001" in t and "9002" in t, t
    assert f"{conf}:2" in t and "0.0.0.0 8080 127.0.0.1 9002" in t, t  # the line to change


def test_haproxy_mode_tcp_backend_down(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("haproxy")
    _c, s = pair
    conf = tmpdir / "haproxy.cfg"
    conf.write_text("defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\n"
                    "listen pg\n    bind *:8080\n    server db1 127.0.0.1:9001\n")
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    t = text_of(finding(doc, "service_not_running"))
    assert "HAProxy" in t and "127.0.0.1:9001" in t and "nothing listens on port 9001" in t and f"{conf}:9" in t, t
    assert "proxy_upstream" in {f["cause"] for f in doc["findings"]}, brief(doc)  # the proxy check's own view


def test_systemd_socket_proxyd_to_a_dead_port(pair: tuple[Host, Host]) -> None:
    need("systemd-socket-activate", "/lib/systemd/systemd-socket-proxyd")
    c, s = pair
    s.start(["systemd-socket-activate", "-l", "8080", "/lib/systemd/systemd-socket-proxyd", "127.0.0.1:9001"],
            ready_port=8080)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    t = text_of(finding(doc, "service_not_running"))
    assert "systemd-socket-proxyd" in t and "127.0.0.1:9001" in t, t


def test_forwarders_in_front_of_a_container_app_on_its_loopback(tmpdir: Path) -> None:
    """socat and Docker's userland proxy (docker-proxy, run as dockerd runs it) in front of a Podman
    container whose app listens on the container's 127.0.0.1."""
    need("socat", "/usr/sbin/docker-proxy")
    from test_container_lab import IMAGE, podman_lab

    with podman_lab("pdf", "pdfwd", subnet_offset=11) as (p, c, h, _tmp):
        name = p.run("web", IMAGE, "/bin/httpd", "-f", "-p", "127.0.0.1:8080")
        p.wait_listening(name, 8080)
        ip = p.inspect(name)["NetworkSettings"]["Networks"][p.network]["IPAddress"]
        h.start(["socat", "TCP-LISTEN:18080,fork,reuseaddr", f"TCP:{ip}:8080"], ready_port=18080)
        # dockerd hands docker-proxy a pipe on fd 3 to say it is ready; /dev/null stands in for it
        h.start(["sh", "-c", f"exec /usr/sbin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 18081 "
                             f"-container-ip {ip} -container-port 8080 3>/dev/null"], ready_port=18081)
        for port, who in ((18080, "socat"), (18081, "docker-proxy")):
            dropped(c, port=port)
            _rc, doc = p.portdoctor(h, "diagnose", f"10.0.0.2:{port}", "--from", "10.0.0.1")
            verdict(doc, "wrong_interface")
            f = finding(doc, "wrong_interface")
            t = text_of(f)
            assert f["check"] == "forwarder" and who in f["summary"] and f"{ip}:8080" in t and name in t, t
            assert "127.0.0.1:8080" in t and "0.0.0.0:8080" in t, t  # the fix: the app's bind, in the container
