"""The per-target state machine: down after N failures, up again, DNS as its own status,
flapping as one incident with few alerts."""

from __future__ import annotations

import itertools

from portdoctor.monitor.state import Check, Tracker


def ok(at: float) -> Check:
    return Check(at, True, "open", 0.001, "accepted")


def bad(at: float, state: str = "refused") -> Check:
    return Check(at, False, state, 0.001, state)


# incident ids per tracker; the tracker is kept with its counter, so that its id() is never
# reused by a later tracker (which would then start at the old tracker's next id)
_IDS: dict[int, tuple[Tracker, itertools.count]] = {}


def run(tracker: Tracker, checks: list[Check]) -> list:
    _, ids = _IDS.setdefault(id(tracker), (tracker, itertools.count(1)))
    out = []
    for c in checks:
        out += tracker.feed(c, lambda: next(ids))
    return out


def test_down_after_n_failures_and_up_again() -> None:
    tr = Tracker("web", failures=3, successes=2)
    changes = run(tr, [ok(0), bad(10), bad(20)])
    assert [c.status for c in changes] == ["up"] and tr.status == "up"
    changes = run(tr, [bad(30)])
    assert [(c.previous, c.status, c.alert) for c in changes] == [("up", "down", "down")]
    assert tr.incident == 1
    changes = run(tr, [ok(40)])
    assert changes == [] and tr.status == "down"  # two good checks needed
    changes = run(tr, [ok(50)])
    assert [(c.status, c.alert, c.incident) for c in changes] == [("up", "up", 1)]
    assert tr.incident is None


def test_first_success_is_up_without_an_alert() -> None:
    tr = Tracker("web")
    (change,) = run(tr, [ok(0)])
    assert (change.previous, change.status, change.alert) == ("unknown", "up", None)


def test_dns_failure_is_its_own_status() -> None:
    tr = Tracker("db", failures=2)
    changes = run(tr, [ok(0), bad(10, "dns_error"), bad(20, "dns_error")])
    assert [(c.status, c.alert) for c in changes][-1] == ("dns", "dns")
    # the name resolves again but the port refuses: another kind of trouble, said once, same incident
    changes = run(tr, [bad(30)])
    assert [(c.previous, c.status, c.alert, c.incident) for c in changes] == [("dns", "down", "down", 1)]
    assert tr.incident == 1


def test_change_of_failure_state_while_down_is_recorded_not_alerted() -> None:
    tr = Tracker("web", failures=1)
    run(tr, [ok(0), bad(10)])
    changes = run(tr, [bad(20, "timeout")])
    assert [(c.status, c.check.state, c.alert) for c in changes] == [("down", "timeout", None)]
    assert run(tr, [bad(30, "timeout")]) == []


def test_flapping_target_is_one_incident_with_few_alerts() -> None:
    tr = Tracker("web", failures=1, successes=1, flap_window=60, flap_changes=4)
    checks = [ok(0)]
    for i in range(20):  # a change every 2 s for 40 s
        checks.append(bad(1 + 2 * i) if i % 2 == 0 else ok(1 + 2 * i))
    changes = run(tr, checks)
    alerts = [c.alert for c in changes if c.alert]
    assert alerts == ["down", "up", "down", "flapping"], alerts
    assert {c.incident for c in changes if c.incident is not None} == {1}
    assert tr.flapping
    # stable (up) for a whole window: one closing alert, the incident ends
    changes = run(tr, [ok(50), ok(100)])
    assert [(c.alert, c.incident) for c in changes if c.alert] == [("up", 1)]
    assert not tr.flapping and tr.incident is None
    # much later: a new failure is a new incident
    changes = run(tr, [bad(1000)])
    assert [(c.alert, c.incident) for c in changes] == [("down", 2)]


def test_flapping_that_ends_down_says_so() -> None:
    tr = Tracker("web", failures=1, flap_window=30, flap_changes=3)
    run(tr, [ok(0), bad(1), ok(2), bad(3)])
    assert tr.flapping
    changes = run(tr, [bad(10), bad(40)])
    assert [(c.status, c.alert) for c in changes if c.alert] == [("down", "down")]
    assert "stopped flapping" in changes[-1].note
