"""`diagnose TARGET --ssh [USER@]HOST` against Debian's real OpenSSH server in a server namespace.

Each test runs its own `sshd -D` (own config, host key and authorized key in a temporary folder;
the machine's /etc/ssh and ~/.ssh are never read or touched: the client gets --ssh-key,
--known-hosts and an empty --ssh-config, and no agent). The server side is portdoctor's own
package, sent over the channel to the server's python3; port 2222 of the same sshd forces a PATH
without python3, port 2223 one with an installed portdoctor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from netlab import Host, Lab
from servers import need, readable_tmpdir, sshd_privsep

SSHD = "/usr/sbin/sshd"


@dataclass
class SshLab:
    """Client c (10.0.0.1), server s (10.0.0.2) with sshd, and the client's SSH files."""

    c: Host
    s: Host
    d: Path
    sshds: list[subprocess.Popen]

    @property
    def key(self) -> Path:
        return self.d / "client_key"

    def args(self, *hosts: str, key: Path | None = None, known: Path | None = None) -> list[str]:
        out = []
        for h in hosts:
            out += ["--ssh", h]
        return out + ["--ssh-key", str(key or self.key), "--known-hosts", str(known or self.d / "known_hosts"),
                      "--ssh-config", str(self.d / "ssh_config")]

    def diagnose(self, target: str, *args: str, fmt: str = "--json") -> subprocess.CompletedProcess[str]:
        return self.c.portdoctor("diagnose", target, *args, fmt, env={"SSH_AUTH_SOCK": ""}, timeout=120)

    def sshd_log(self) -> str:
        """The tail of every sshd's log (stderr, -e), for assertion messages."""
        logs = [getattr(p, "log", None) for p in self.sshds]
        return "\n".join(Path(x).read_text(errors="replace")[-2000:] for x in logs if x and Path(x).exists())


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "portdoctor-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


def start_sshd(h: Host, d: Path, name: str) -> subprocess.Popen:
    """Debian's sshd in `h`, on ports 22, 2222 (no python3 on PATH), 2223 (an installed portdoctor)
    and 2224 (only /usr/bin:/bin: Debian's python3, no third-party packages; a greeting printed first)."""
    bindir = Path(sys.executable).parent
    assert (bindir / "portdoctor").exists(), "the test run's portdoctor script is needed for port 2223"
    conf = d / f"sshd_{name}.conf"
    conf.write_text(
        "Port 22\nPort 2222\nPort 2223\nPort 2224\n"
        f"HostKey {d}/host_key\nPidFile none\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPrintMotd no\nLogLevel VERBOSE\n"
        "Match LocalPort 2222\n"
        "  ForceCommand PATH=/var/empty; export PATH; eval \"$SSH_ORIGINAL_COMMAND\"\n"
        "Match LocalPort 2223\n"
        f"  ForceCommand PATH={bindir}:/usr/bin:/bin; export PATH; eval \"$SSH_ORIGINAL_COMMAND\"\n"
        "Match LocalPort 2224\n"
        "  ForceCommand echo 'Welcome to db1 {managed}'; PATH=/usr/bin:/bin; export PATH; eval \"$SSH_ORIGINAL_COMMAND\"\n")
    return h.start([SSHD, "-D", "-e", "-f", str(conf)], ready_port=22)


@pytest.fixture
def ssh(lab: Lab) -> Iterator[SshLab]:
    need(SSHD, "ssh-keygen", "ssh-agent", "ssh-add", "iptables")
    sshd_privsep()
    gen = readable_tmpdir("pdlab-ssh-")
    d = next(gen)
    try:
        host_pub = _keygen(d / "host_key").split()
        (d / "authorized_keys").write_text(_keygen(d / "client_key") + "\n")
        _keygen(d / "stranger_key")
        kt, kb = host_pub[0], host_pub[1]
        (d / "known_hosts").write_text("".join(f"{h} {kt} {kb}\n" for h in
                                               ("10.0.0.2", "[10.0.0.2]:2222", "[10.0.0.2]:2223", "[10.0.0.2]:2224",
                                                "10.0.1.2", "fd00::2")))
        (d / "ssh_config").write_text("")
        c, s = lab.pair()
        yield SshLab(c, s, d, [start_sshd(s, d, "s")])
    finally:
        lab.teardown()
        next(gen, None)


def _one_line(cp: subprocess.CompletedProcess[str], *words: str) -> str:
    assert cp.returncode == 3, (cp.returncode, cp.stdout, cp.stderr)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cp.stderr, cp.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


# Port 8093, not 8080: the server's snapshot also reads the machine's other namespaces, and a
# loopback-only 8080 of some other lab running at the same time would read as port_mapping.
@pytest.mark.parametrize("fault,cause", [
    ("not running", "service_not_running"),
    ("loopback bind", "wrong_interface"),
    ("firewall reject for the client", "firewall_reject"),
])
def test_the_server_side_cause_comes_over_ssh(ssh: SshLab, fault: str, cause: str) -> None:
    if fault == "loopback bind":
        ssh.s.listen(8093, "127.0.0.1", argv0="billing-api")
    elif fault.startswith("firewall"):
        ssh.s.listen(8093, "0.0.0.0", argv0="billing-api")
        ssh.s.iptables("-A", "INPUT", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8093", "-j", "REJECT",
                       "--reject-with", "tcp-reset")
        assert ssh.s.connect_errno("10.0.0.2", 8093) == 0  # others are let in: only this client is refused
    cp = ssh.diagnose("10.0.0.2:8093", *ssh.args("root@10.0.0.2"))
    assert cp.returncode == 1, (cp.stdout, cp.stderr, ssh.sshd_log())
    doc = json.loads(cp.stdout)
    assert doc["schema"] == "portdoctor.diagnosis/1" and doc["probe"]["state"] == "refused"
    assert doc["verdict"]["cause"] == cause, doc["verdict"]
    assert doc["ssh"]["from"] == "10.0.0.1" and doc["ssh"]["via"].startswith("sent to ")
    if cause == "wrong_interface":
        assert "127.0.0.1" in json.dumps(doc["findings"])
    if cause == "firewall_reject":  # the server sampled its rule counters around this client's own probe
        assert "0 before the probe, 1 after" in json.dumps(doc["findings"][0]["evidence"]), doc["findings"][0]


def test_over_ipv6_the_target_is_the_address_ssh_reached(ssh: SshLab) -> None:
    ssh.s.listen(8093, "::1", argv0="billing-api")
    cp = ssh.diagnose(":8093", *ssh.args("root@[fd00::2]"))
    doc = json.loads(cp.stdout)
    assert cp.returncode == 1 and doc["verdict"]["cause"] == "wrong_interface", \
        (doc.get("verdict"), cp.stderr, ssh.sshd_log())
    assert doc["target"]["host"] == "fd00::2" and doc["probe"]["addresses"][0]["address"] == "fd00::2"
    assert doc["ssh"]["host"] == "root@[fd00::2]" and doc["ssh"]["from"] == "fd00::1"


def test_an_installed_portdoctor_on_the_server_is_used(ssh: SshLab) -> None:
    ssh.s.listen(8093, "127.0.0.1", argv0="billing-api")
    cp = ssh.diagnose("10.0.0.2:8093", *ssh.args("root@10.0.0.2:2223"))
    doc = json.loads(cp.stdout)
    assert cp.returncode == 1 and doc["verdict"]["cause"] == "wrong_interface", \
        (doc.get("verdict"), cp.stderr, ssh.sshd_log())
    assert doc["ssh"]["via"].startswith("installed ") and doc["ssh"]["via"].endswith("/portdoctor")


def test_debians_own_python3_is_enough(ssh: SshLab) -> None:
    """The package sent to /usr/bin/python3 (no psutil, dnspython, docker there) still finds the
    listener, its owner and the firewall rule for this client; the greeting the account prints
    before every command is skipped."""
    if not Path("/usr/bin/python3").exists():
        pytest.fail("Debian's python3 is needed (scripts/test.sh installs it)")
    ssh.s.listen(8093, "0.0.0.0", argv0="billing-api")
    ssh.s.iptables("-A", "INPUT", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8093", "-j", "REJECT")
    cp = ssh.diagnose("10.0.0.2:8093", *ssh.args("root@10.0.0.2:2224"))
    doc = json.loads(cp.stdout)
    assert cp.returncode == 1 and doc["verdict"]["cause"] == "firewall_reject", \
        (doc.get("verdict"), cp.stderr, ssh.sshd_log())
    assert doc["ssh"]["via"] == "sent to /usr/bin/python3"
    assert "billing-api" in json.dumps(doc["findings"]) or "python" in json.dumps(doc["findings"])


def test_the_users_ssh_setup_config_alias_and_agent(ssh: SshLab) -> None:
    """No --ssh-key: `db` is an alias of the SSH config (HostName, User, UserKnownHostsFile) and the
    key comes from a real ssh-agent; HOME is a folder of the test, so no ~/.ssh of this machine is read."""
    home = ssh.d / "home"
    home.mkdir()
    config = ssh.d / "alias_config"
    config.write_text(f"Host db\n  HostName 10.0.0.2\n  User root\n  UserKnownHostsFile {ssh.d}/known_hosts\n")
    sock = ssh.d / "agent.sock"
    agent = ssh.c.start(["ssh-agent", "-D", "-a", str(sock)], ready_file=sock)
    assert agent.poll() is None
    env = {"SSH_AUTH_SOCK": str(sock), "HOME": str(home)}
    subprocess.run(["ssh-add", "-q", str(ssh.key)], env={**os.environ, **env}, check=True, capture_output=True)
    ssh.s.listen(8093, "127.0.0.1", argv0="billing-api")
    cp = ssh.c.portdoctor("diagnose", "10.0.0.2:8093", "--ssh", "db", "--ssh-config", str(config), "--json",
                          env=env, timeout=120)
    doc = json.loads(cp.stdout)
    assert cp.returncode == 1 and doc["verdict"]["cause"] == "wrong_interface", \
        (doc.get("verdict"), cp.stderr, ssh.sshd_log())
    assert doc["ssh"]["host"] == "db" and doc["ssh"]["from"] == "10.0.0.1"


def test_an_unknown_host_key_is_one_line(ssh: SshLab) -> None:
    empty = ssh.d / "known_hosts_empty"
    empty.write_text("")
    _one_line(ssh.diagnose("10.0.0.2:8093", *ssh.args("root@10.0.0.2", known=empty), fmt="--format=text"),
              "root@10.0.0.2", "host key is not trusted", str(empty))


def test_a_key_the_server_does_not_accept_is_one_line(ssh: SshLab) -> None:
    _one_line(ssh.diagnose("10.0.0.2:8093", *ssh.args("root@10.0.0.2", key=ssh.d / "stranger_key"),
                           fmt="--format=text"),
              "root@10.0.0.2", "authentication failed")


def test_a_server_without_python_is_one_line(ssh: SshLab) -> None:
    _one_line(ssh.diagnose("10.0.0.2:8093", *ssh.args("root@10.0.0.2:2222"), fmt="--format=text"),
              "root@10.0.0.2:2222", "no python3 on the remote PATH (/var/empty)")


def test_several_hosts_at_once_give_the_table(ssh: SshLab, lab: Lab) -> None:
    t = lab.host("t")
    lab.link(ssh.c, t, "10.0.1.1/24", "10.0.1.2/24")
    ssh.sshds.append(start_sshd(t, ssh.d, "t"))
    ssh.s.listen(5432, "0.0.0.0", argv0="postgres")
    t.listen(5432, "127.0.0.1", argv0="postgres")
    inventory = ssh.d / "hosts.txt"
    inventory.write_text("# the database hosts\n[db]\nroot@10.0.0.2\nroot@10.0.1.2\nroot@10.0.0.2:2222\n")
    args = [*ssh.args(), "--inventory", str(inventory), "--jobs", "2"]
    cp = ssh.diagnose(":5432", *args)
    assert cp.returncode == 1, (cp.stdout, cp.stderr, ssh.sshd_log())
    docs = json.loads(cp.stdout)
    got = [(d["ssh"]["host"], d["target"]["host"], d.get("verdict", {}).get("cause"), d["ssh"]["from"]) for d in docs]
    assert got == [("root@10.0.0.2", "10.0.0.2", "ok", "10.0.0.1"),
                   ("root@10.0.1.2", "10.0.1.2", "wrong_interface", "10.0.1.1"),
                   ("root@10.0.0.2:2222", "10.0.0.2", None, None)], got
    assert "no python3" in docs[2]["error"]
    text = ssh.diagnose(":5432", *args, fmt="--format=text")
    rows = text.stdout.splitlines()
    assert rows[0].split() == ["ssh", "host", "target", "client", "sees", "cause", "why"], text.stdout
    assert rows[1].split()[:4] == ["root@10.0.0.2", "10.0.0.2:5432", "open", "ok"]
    assert rows[2].split()[:4] == ["root@10.0.1.2", "10.0.1.2:5432", "refused", "wrong_interface"]
    assert rows[3].split()[:4] == ["root@10.0.0.2:2222", "10.0.0.2:5432", "-", "not"]
    assert "3 hosts: 1 ok, 1 with a problem, 1 not inspected" in text.stdout
