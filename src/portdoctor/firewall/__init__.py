"""Firewall and NAT: rulesets (iptables, ip6tables, nftables, ipset), their parsers and a packet evaluator."""
