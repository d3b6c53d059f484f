"""Operations built on the library: `wait` (block until a dependency accepts) and `guard`
(a health check that restarts a dead service, and refuses restarts that cannot help).

readiness.py   one check of a target: probe (+ optional HTTP status), and what it saw in words
backoff.py     exponential backoff with jitter (pure)
wait.py        the wait loop, its report, and the command to exec afterwards
guard.py       guard's policy and decisions: pure functions of (state, observation, now)
restart.py     how a service is restarted: its supervisor detected from a snapshot, or an argv
guardrun.py    guard's loop: probe, diagnose, decide, restart, log; clean SIGTERM/SIGINT
"""
