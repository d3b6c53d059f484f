"""Stateful firewall rules with real traffic: each client's experience first, then `portdoctor
diagnose` in the server namespace judging the same rules from the kernel's own state (xt_recent
lists, hashlimit buckets, conntrack, the probe's user).

Client c: 10.0.0.1 (+10.0.0.3); server s: 10.0.0.2, listening on 8080.
ufw runs for real inside s: `ip netns exec` binds /etc/netns/NS/ufw over /etc/ufw, so its state
files are the namespace's own copy and the host's ufw is never touched.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from typing import Any

import pytest

from clients import HOLD, connect_from
from netlab import Host, python_for

pytestmark = pytest.mark.lab

if os.environ.get("CI") != "true":
    if os.geteuid() != 0:
        pytest.skip("stateful firewall lab tests need root (they fail instead under CI=true)", allow_module_level=True)
    if not (shutil.which("iptables") and shutil.which("nft") and shutil.which("ufw")):
        pytest.skip("iptables, nft and ufw are needed (they fail instead under CI=true)", allow_module_level=True)


def diagnose(s: Host, *args: str) -> dict[str, Any]:
    _rc, doc = s.json_of("diagnose", "10.0.0.2:8080", "--timeout", "0.5", *args)
    return doc


def firewall(doc: dict[str, Any], cause: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["check"] == "firewall" and f["cause"] == cause]


def hold(c: Host, n: int) -> subprocess.Popen:
    """n connections from c to s:8080, kept open."""
    exe, env = python_for(None)
    proc = c.popen([exe, "-c", HOLD, "10.0.0.2", "8080", str(n)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_ufw_limit_refuses_the_burst_and_names_the_recent_list(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.add_addr("10.0.0.3/24", "veth0")
    s.etc.mkdir(parents=True, exist_ok=True)
    shutil.copytree("/etc/ufw", s.etc / "ufw")
    s.run(["ufw", "limit", "8080/tcp"])
    s.run(["ufw", "--force", "enable"])
    assert "--hitcount 6" in s.run(["iptables-save"]).stdout  # ufw's own limit rule
    s.listen(8080)
    seen = [connect_from(c, "10.0.0.1", "10.0.0.2", 8080) for _ in range(8)]
    # ufw stamps every new connection, then refuses once 6 are within 30 s: the 6th on
    assert seen[:5] == [0] * 5 and set(seen[5:]) == {errno.ECONNREFUSED}, seen
    doc = diagnose(s, "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "firewall_reject", doc
    (f,) = [f for f in firewall(doc, "firewall_reject") if f["severity"] == "error"][:1]
    assert "chain ufw-user-limit" in f["summary"] and "list DEFAULT" in f["summary"], f
    assert "intermittent refusal" in f["summary"]
    ev = "\n".join(f["evidence"])
    assert "stamps of 10.0.0.1" in ev and "--update --seconds 30 --hitcount 6" in ev, ev
    # the fix that clears the client's stamps lets it in at once
    clear = [x["command"] for x in f["fix"] if "xt_recent" in (x["command"] or "")]
    assert clear == ["echo -10.0.0.1 > /proc/net/xt_recent/DEFAULT"], f["fix"]
    s.run(["sh", "-c", clear[0]])
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == 0
    # another client is not on the list: it gets in, and diagnose agrees
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == 0
    other = diagnose(s, "--from", "10.0.0.3")
    assert not [f for f in firewall(other, "firewall_reject") if f["severity"] == "error"], other


def test_connlimit_above_2_rejects_the_third_connection(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "connlimit", "--connlimit-above", "2",
               "--connlimit-mask", "32", "-j", "REJECT", "--reject-with", "tcp-reset")
    held = hold(c, 2)
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "firewall_reject", doc
    f = firewall(doc, "firewall_reject")[0]
    assert "more than 2 connections" in f["summary"] and "intermittent refusal" in f["summary"], f
    assert any("10.0.0.1 has 2 connections open to port 8080" in e for e in f["evidence"]), f
    # another source has no connection open: it gets in, and diagnose agrees
    c.add_addr("10.0.0.3/24", "veth0")
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == 0
    other = diagnose(s, "--from", "10.0.0.3")
    assert other["verdict"]["cause"] == "ok", other  # a warning for clients that have 2 open is fine
    # the client's held connections closed on its side stay in CLOSE_WAIT (the server keeps its
    # end): the kernel still counts them, and so does diagnose
    held.kill()
    held.wait()
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    assert diagnose(s, "--from", "10.0.0.1")["verdict"]["cause"] == "firewall_reject"


def test_hashlimit_drops_a_burst_and_the_intermittent_probe_names_it(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "hashlimit", "--hashlimit-above",
               "1/min", "--hashlimit-burst", "3", "--hashlimit-mode", "srcip", "--hashlimit-name", "pdburst",
               "-j", "DROP")
    seen = [c.connect_errno("10.0.0.2", 8080, timeout=0.3) for _ in range(5)]
    assert seen == [0, 0, 0, errno.ETIMEDOUT, errno.ETIMEDOUT], seen
    doc = diagnose(s, "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "firewall_drop", doc
    f = firewall(doc, "firewall_drop")[0]
    assert "only over 1 per minute (burst 3) per srcip: an intermittent refusal" in f["summary"], f
    assert any("bucket of 10.0.0.1" in e and "used up" in e for e in f["evidence"]), f
    # this host's own probe, 5 attempts: its bucket (10.0.0.2, one credit already spent by the
    # diagnosis above) lets 2 through, then drops
    doc = diagnose(s, "--attempts", "5")
    (a,) = doc["probe"]["addresses"]
    assert a["attempts"] == {"open": 2, "timeout": 3}, a
    assert doc["verdict"]["cause"] == "firewall_drop", doc
    f = firewall(doc, "firewall_drop")[0]
    assert f["summary"].startswith("intermittent refusal: rule 1 of chain INPUT"), f
    ev = "\n".join(f["evidence"])
    assert "the probe saw open ×2, timeout ×3" in ev and "packet counter of rule 1 of chain INPUT" in ev, ev


def test_nft_ct_count_over_2_rejects(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("table inet pdcount {\n chain input {\n type filter hook input priority 0;\n"
          " tcp dport 8080 ct count over 2 reject with tcp reset\n }\n}\n")
    held = hold(c, 2)
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "firewall_reject", doc
    f = firewall(doc, "firewall_reject")[0]
    assert "more than 2 connections are open in all" in f["summary"], f
    assert any("clients have 2 connections open to port 8080" in e for e in f["evidence"]), f
    held.kill()


def test_owner_reject_in_output_for_one_user(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080)
    s.iptables("-A", "OUTPUT", "-p", "tcp", "--dport", "8080", "-m", "owner", "--uid-owner", "65534",
               "-j", "REJECT", "--reject-with", "tcp-reset")
    exe, env = python_for("nobody")
    code = ("import socket,sys; k=socket.socket(); k.settimeout(1); "
            "print(k.connect_ex(('10.0.0.2', 8080)))")
    assert s.run([exe, "-c", code], user="nobody", env=env, cwd="/").stdout.strip() == str(errno.ECONNREFUSED)
    assert s.connect_errno("10.0.0.2", 8080) == 0  # root's connections get through
    doc = diagnose(s)
    assert doc["probe"]["state"] == "open"
    f = firewall(doc, "firewall_reject")[0]
    assert "rule 1 of chain OUTPUT" in f["summary"] and "by uid 65534" in f["summary"], f
    assert any("probe ran as uid 0" in e for e in f["evidence"]), f
