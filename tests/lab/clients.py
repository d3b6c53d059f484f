"""What the lab tests' clients do beyond netlab's Host: connect from a chosen source address, and
hold connections open (completed or half-open) to fill a server's queues."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

from netlab import Host, in_netns


def connect_from(h: Host, src: str, dst: str, port: int, timeout: float = 0.5) -> int:
    """Connect from h, bound to source address `src`; 0 when accepted, else the errno."""
    def go() -> int:
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as sk:
            sk.settimeout(timeout)
            sk.bind((src, 0))
            try:
                rc = sk.connect_ex((dst, port))
            except socket.timeout:
                return errno.ETIMEDOUT
            return errno.ETIMEDOUT if rc in (errno.EAGAIN, errno.EINPROGRESS) else rc
    return in_netns(h.ns, go)


# python3 -c HOLD ADDRESS PORT N: opens N connections (each waits up to 1 s) and keeps them open
HOLD = """
import socket, sys, time
conns = []
for _ in range(int(sys.argv[3])):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    conns.append(s)
print("held", flush=True)
time.sleep(120)
"""

# python3 -c HALF_OPEN ADDRESS PORT N SOURCE: sends N SYNs from SOURCE without waiting for the
# handshakes; they stay half-open on the server when the client never answers its SYN-ACKs
HALF_OPEN = """
import socket, sys, time
held = []
for _ in range(int(sys.argv[3])):
    s = socket.socket()
    s.bind((sys.argv[4], 0))
    s.setblocking(False)
    s.connect_ex((sys.argv[1], int(sys.argv[2])))
    held.append(s)
print("held", flush=True)
time.sleep(120)
"""


def held(h: Host, script: str, *args: str) -> subprocess.Popen:
    """Run a holding script (HOLD, HALF_OPEN) in h with `args`; return once it holds its connections.

    The lab kills it at teardown.
    """
    holder = h.popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def hold(c: Host, n: int, port: int = 8080, address: str = "10.0.0.2") -> subprocess.Popen:
    """c opens `n` connections to address:port and keeps them (see HOLD)."""
    return held(c, HOLD, address, str(port), str(n))
