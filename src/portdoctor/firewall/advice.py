"""What a firewall outcome means for the client, and the exact command that changes it.

Commands are written for the tool that owns the rule (iptables, ip6tables, iptables-legacy,
nft) and, when the rule lives in chains written by a manager (ufw, firewalld, kube-proxy,
Docker), in that manager's own terms first, since it would overwrite a hand-made rule.
"""

from __future__ import annotations

import re
import shlex

from portdoctor.firewall.evaluate import FlowVerdict, Outcome, Step
from portdoctor.firewall.model import Table
from portdoctor.model import Fix

# reject type -> (errno name, what the client prints)
_REFUSED = ("ECONNREFUSED", "connection refused")
_HOST = ("EHOSTUNREACH", "no route to host")
_NET = ("ENETUNREACH", "network is unreachable")


def client_error(outcome: Outcome) -> tuple[str, str]:
    """(errno, words) a client sees for a drop or reject outcome.

    >>> from portdoctor.firewall.evaluate import Flow
    >>> client_error(Outcome(FlowVerdict.REJECT, None, "input", Flow("10.0.0.2", 80), reject_with="icmp-host-prohibited"))
    ('EHOSTUNREACH', 'no route to host')
    """
    if outcome.verdict is FlowVerdict.DROP:
        if outcome.hook in ("output", "postrouting") and outcome.flow.local_src:
            # TCP retries the SYN quietly; connect() ends in a timeout, not EPERM
            return "ETIMEDOUT", "a timeout (this host drops the packet before it leaves)"
        return "ETIMEDOUT", "a timeout (the packet is dropped without an answer)"
    t = outcome.reject_with.lower()
    v6 = outcome.flow.family == 6
    if t in ("", "tcp-reset") or t.endswith("port-unreachable") or t.endswith("port-unreach"):
        return _REFUSED
    if "adm" in t and v6:
        return "EACCES", "permission denied (ICMPv6 administratively prohibited)"
    if "net" in t or "no-route" in t:
        return _NET
    if "proto" in t:
        return "ENOPROTOOPT", "protocol not available"
    return _HOST


def reject_words(outcome: Outcome) -> str:
    """'rejects (tcp-reset)' / 'drops' for a summary."""
    if outcome.verdict is FlowVerdict.DROP:
        return "drops"
    t = outcome.reject_with or ("icmp6-port-unreachable" if outcome.flow.family == 6 else "icmp-port-unreachable")
    return f"rejects ({t})"


def command_tool(table: Table) -> str:
    """The command that edits `table`."""
    fam6 = table.family == "ip6"
    if table.source == "iptables-legacy":
        return "ip6tables-legacy" if fam6 else "iptables-legacy"
    if table.source.startswith("iptables"):
        return "ip6tables" if fam6 else "iptables"
    return "nft"


_KUBE_NO_EP = re.compile(r"^(?P<ns>[^/\s]+)/(?P<svc>[^:\s]+)(?::(?P<port>\S*))?\s+has no endpoints")
_FIREWALLD_ZONE = re.compile(r"^(?:filter_)?IN_(?P<zone>.+?)(?:_(?:allow|deny|log|pre|post))?$")


def kube_service(step: Step | None) -> tuple[str, str, str] | None:
    """(namespace, service, port name) when the rule is kube-proxy's "has no endpoints" reject."""
    if step is None or step.rule is None:
        return None
    m = _KUBE_NO_EP.match(step.rule.comment.strip())
    if m is None:
        return None
    return m.group("ns"), m.group("svc"), m.group("port") or ""


_KUBE_NAME = re.compile(r"^(?P<ns>[^/\s]+)/(?P<svc>[^:\s/]+)(?::(?P<port>\S*))?$")


def kube_service_of(outcome: Outcome) -> tuple[str, str, str] | None:
    """(namespace, service, port name) when kube-proxy rejects for lack of endpoints.

    iptables mode says so in the rule's comment; nftables mode in the comment of the
    no-endpoint-services / no-endpoint-nodeports map element that led to its reject-chain.
    """
    found = kube_service(outcome.step)
    if found is not None:
        return found
    step = outcome.step
    if step is None or not (step.table.name == "kube-proxy" or step.chain == "reject-chain"):
        return None
    for note in reversed(outcome.notes):
        m = _KUBE_NAME.match(note.strip())
        if m:
            return m.group("ns"), m.group("svc"), m.group("port") or ""
    return None


def manager(outcome: Outcome) -> str:
    """Who wrote the chain that decided: ufw, firewalld, kube-proxy, docker, or ''."""
    steps = [*outcome.path, *([outcome.step] if outcome.step else [])]
    names = [s.chain for s in steps]
    tables = {s.table.name for s in steps}
    if kube_service_of(outcome) or any(n.startswith("KUBE-") for n in names) or "kube-proxy" in tables:
        return "kube-proxy"
    # a policy decision has no path; the table's chains still say who manages it
    table_chains = {c.name for s in steps for c in s.table.chains}
    if any(n.startswith("ufw-") or n.startswith("ufw6-") for n in names) or \
            (outcome.step is not None and outcome.step.rule is None
             and any(n.startswith("ufw-") or n.startswith("ufw6-") for n in table_chains)):
        return "ufw"
    if "firewalld" in tables or any(_FIREWALLD_ZONE.match(n) for n in names):
        return "firewalld"
    if any(n.startswith("DOCKER") for n in names):
        return "docker"
    if any(n.startswith("NETAVARK") or n.startswith("CNI-") for n in names) or "netavark" in tables:
        return "podman"
    return ""


def _zone(outcome: Outcome) -> str:
    for s in [*([outcome.step] if outcome.step else []), *reversed(outcome.path)]:
        m = _FIREWALLD_ZONE.match(s.chain)
        if m:
            return m.group("zone")
    return "public"


def _nft_family_word(outcome: Outcome) -> str:
    return "ip6" if outcome.flow.family == 6 else "ip"


def allow_fixes(outcome: Outcome, source: str | None) -> list[Fix]:
    """Commands that let this flow through, scoped to `source` when known, most specific first."""
    step = outcome.step
    flow = outcome.flow
    port = flow.dport
    src = source
    fixes: list[Fix] = []
    if step is None:
        if "forward" in outcome.note:
            key = "net.ipv6.conf.all.forwarding" if flow.family == 6 else "net.ipv4.ip_forward"
            fixes.append(Fix("enable forwarding so DNATed connections reach their backend", f"sysctl -w {key}=1"))
        return fixes
    kube = kube_service_of(outcome)
    if kube is not None:
        ns, svc, _pname = kube
        fixes.append(Fix(f"kube-proxy rejects this port because Service {ns}/{svc} has no ready endpoints; "
                         "list them (an empty list means no Ready pod matches)",
                         f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={svc}"))
        fixes.append(Fix("check that the Service's selector matches the pods' labels and its targetPort the "
                         "port the pods listen on, and that those pods are Ready",
                         f"kubectl -n {ns} describe service {svc}"))
        return fixes
    who = manager(outcome)
    if who == "ufw":
        if src:
            fixes.append(Fix("allow it with ufw, ahead of the rule that blocks it",
                             f"ufw insert 1 allow from {src} to any port {port} proto tcp"))
        else:
            fixes.append(Fix("allow it with ufw", f"ufw allow {port}/tcp"))
    elif who == "firewalld":
        zone = _zone(outcome)
        if src:
            fam = "ipv6" if flow.family == 6 else "ipv4"
            rich = f'rule family="{fam}" source address="{src}" port port="{port}" protocol="tcp" accept'
            fixes.append(Fix(f"allow it in firewalld zone {zone} (add --permanent, or run "
                             "`firewall-cmd --runtime-to-permanent`, to keep it)",
                             f"firewall-cmd --zone={zone} --add-rich-rule={shlex.quote(rich)}"))
        else:
            fixes.append(Fix(f"open the port in firewalld zone {zone} (add --permanent to keep it)",
                             f"firewall-cmd --zone={zone} --add-port={port}/tcp"))
    table = step.table
    tool = command_tool(table)
    chain = step.chain
    if tool == "nft":
        match = (f"{_nft_family_word(outcome)} saddr {src} " if src else "") + f"tcp dport {port}"
        where = f"{table.family} {table.name} {chain}"
        if step.rule is not None and step.rule.handle is not None:
            fixes.append(Fix(f"accept it before the rule that {'drops' if outcome.verdict == 'drop' else 'rejects'} it",
                             f"nft insert rule {where} position {step.rule.handle} {match} accept"))
            fixes.append(Fix("or delete that rule (check first what else it blocks)",
                             f"nft delete rule {where} handle {step.rule.handle}"))
        else:
            fixes.append(Fix(f"accept it before the chain's {outcome.verdict} policy applies",
                             f"nft add rule {where} {match} accept"))
    else:
        t = "" if table.name == "filter" else f"-t {table.name} "
        match = "-p tcp " + (f"-s {src} " if src else "") + f"--dport {port}"
        if step.rule is not None:
            verb = "drops" if outcome.verdict is FlowVerdict.DROP else "rejects"
            fixes.append(Fix(f"accept it before the rule that {verb} it (rule {step.rule.position} of {chain})",
                             f"{tool} {t}-I {chain} {step.rule.position} {match} -j ACCEPT"))
            fixes.append(Fix("or delete that rule (check first what else it blocks)",
                             f"{tool} {t}-D {chain} {step.rule.position}"))
        else:
            fixes.append(Fix(f"accept it before chain {chain}'s DROP policy applies",
                             f"{tool} {t}-A {chain} {match} -j ACCEPT"))
    if who == "docker" and chain != "DOCKER-USER":
        fixes.append(Fix("Docker rewrites its own chains; put lasting rules in DOCKER-USER", None))
    if who in ("ufw", "firewalld"):
        fixes.append(Fix(f"{who} owns these chains: prefer its command above, a hand-made rule is lost on reload",
                         None))
    return fixes


def established_fixes(outcome: Outcome) -> list[Fix]:
    """Accept the packets of connections already let in, at the top of the base chain."""
    step = outcome.step
    if step is None:
        return []
    base = outcome.path[0] if outcome.path else step
    table = base.table
    tool = command_tool(table)
    if tool == "nft":
        cmd = f"nft insert rule {table.family} {table.name} {base.chain} ct state established,related accept"
    else:
        t = "" if table.name == "filter" else f"-t {table.name} "
        cmd = f"{tool} {t}-I {base.chain} 1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    return [Fix(f"accept packets of connections already let in, first in chain {base.chain}", cmd)]


def mapping_fixes(nat: Step, backend: str, state: str) -> list[Fix]:
    """What to do when a DNAT sends the connection to a backend that refuses or does not answer."""
    fixes = [Fix(f"make the service listen on {backend} (on that address or 0.0.0.0, not 127.0.0.1 only), "
                 "or point the rule at the address and port it really uses", None)]
    rule = nat.rule
    if rule is None:
        return fixes
    who = nat_manager(nat)
    if who == "kube-proxy":
        fixes.append(Fix("the endpoint behind this Service does not accept the port: check the pod and the "
                         "Service's targetPort", "kubectl get endpointslices -A -o wide"))
    elif who in ("docker", "podman"):
        port = rule_port(nat)
        fixes.append(Fix("check the container publishing this port is running and its app listens on the "
                         "container port on 0.0.0.0 (not 127.0.0.1 inside the container)",
                         f"{who} ps --filter publish={port}" if port else f"{who} ps"))
    tool = command_tool(nat.table)
    if tool == "nft":
        if rule.handle is not None:
            fixes.append(Fix("if the mapping is stale, delete it",
                             f"nft delete rule {nat.table.family} {nat.table.name} {nat.chain} handle {rule.handle}"))
    else:
        t = "" if nat.table.name == "filter" else f"-t {nat.table.name} "
        fixes.append(Fix("if the mapping is stale (its backend is gone), delete it",
                         f"{tool} {t}-D {nat.chain} {rule.position}"))
    return fixes


def nat_manager(nat: Step) -> str:
    """Who wrote a NAT rule: kube-proxy, docker, podman, or ''."""
    if nat.chain.startswith("KUBE-") or nat.table.name == "kube-proxy":
        return "kube-proxy"
    if nat.chain.startswith("DOCKER"):
        return "docker"
    if nat.chain.startswith("NETAVARK") or nat.chain.startswith("CNI-") or nat.table.name == "netavark":
        return "podman"
    return ""


def rule_port(step: Step) -> str:
    """The destination port a rule matches, when it names exactly one."""
    if step.rule is None:
        return ""
    for m in step.rule.matches:
        if m.kind == "dport" and not m.neg and len(m.values) == 1 and "-" not in str(m.values[0]):
            return str(m.values[0])
    return ""
