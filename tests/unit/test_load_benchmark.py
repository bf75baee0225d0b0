"""The load benchmark's own logic (benchmarks/desk_day.py): the mix, what a desk may do next, the event log's
figures and a soak's drift. No system runs and nothing is timed."""
import ast
import random
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import desk_day  # noqa: E402
from desk_day import MAX_OPEN_HOLDS, MIX, RENEWAL_LIMIT, Copy, Desk  # noqa: E402


def a_desk(lent=3, copies=6, holds=None):
    return Desk("100000000001", 1, [Copy(f"C{n}", loan_id=n + 1 if n < lent else None) for n in range(copies)],
                hold_works=[11, 12, 13, 14, 15], holds=dict(holds or {}))


def test_the_mix_is_a_desk_day_whose_shares_add_up():
    shares = desk_day.mix_shares()
    assert sum(MIX.values()) == 100
    assert sum(shares.values()) == pytest.approx(1.0)
    searches = MIX["search_page"] + MIX["search_api"]
    assert searches > 2 * MIX["checkout"]
    assert MIX["checkout"] == MIX["checkin"]
    assert MIX["hold_place"] == MIX["hold_cancel"]
    assert max(MIX["renewal"], MIX["hold_place"]) < MIX["patron_lookup"] < MIX["checkout"]


def test_every_operation_a_desk_can_choose_is_a_method_of_the_locust_user():
    tree = ast.parse((BENCHMARKS / "locustfile.py").read_text(encoding="utf-8"))
    user = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "DeskUser")
    methods = {node.name for node in user.body if isinstance(node, ast.FunctionDef)}
    assert set(MIX) | set(desk_day.REPAIRS) <= methods


def test_a_desk_draws_the_mix_when_it_can_do_everything():
    desk, rng = a_desk(holds={1: 11}), random.Random(1)
    drawn = [desk.next_operation(rng) for _ in range(20_000)]
    for operation, share in desk_day.mix_shares().items():
        assert drawn.count(operation) / len(drawn) == pytest.approx(share, abs=0.01), operation


@pytest.mark.parametrize("wanted, desk, instead", [
    ("checkout", a_desk(lent=6), "checkin"),
    ("checkin", a_desk(lent=0), "checkout"),
    ("renewal", a_desk(lent=0), "checkout"),
    ("hold_place", a_desk(holds={n: 11 + n for n in range(MAX_OPEN_HOLDS)}), "hold_cancel"),
    ("hold_cancel", a_desk(holds={}), "hold_place"),
    ("search_page", a_desk(lent=0, holds={}), "search_page"),
])
def test_an_operation_the_desk_cannot_do_becomes_its_counterpart(wanted, desk, instead):
    assert desk.feasible(wanted) == instead


def test_a_loan_renewed_to_the_limit_goes_back_instead():
    desk = a_desk(lent=1)
    desk.copies[0].renewals = RENEWAL_LIMIT
    assert desk.feasible("renewal") == "checkin"


def test_a_hold_is_placed_only_on_works_the_desk_does_not_hold_yet():
    desk = a_desk(holds={1: 11, 2: 12})
    assert desk.works_to_hold() == [13, 14, 15]
    everything_held = Desk("1", 1, [Copy("C")], hold_works=[11], holds={1: 11})
    assert everything_held.feasible("hold_place") == "hold_cancel"


def test_a_lost_answer_is_repaired_before_anything_else():
    desk = a_desk()
    desk.copies[2].uncertain = True
    assert desk.next_operation(random.Random(0)) == "repair_copy"
    desk.copies[2].uncertain, desk.holds_uncertain = False, True
    assert desk.next_operation(random.Random(0)) == "repair_holds"


def test_over_a_long_day_check_outs_match_check_ins_and_holds_placed_match_cancelled():
    desk, rng, done = a_desk(), random.Random(7), []
    next_hold = iter(range(1, 10**6))
    for _ in range(10_000):
        operation = desk.next_operation(rng)
        done.append(operation)
        if operation == "checkout":
            desk.copy_to_lend(rng).loan_id = 1
        elif operation == "checkin":
            copy = desk.copy_to_return(rng)
            copy.loan_id, copy.renewals = None, 0
        elif operation == "renewal":
            desk.copy_to_renew().renewals += 1
        elif operation == "hold_place":
            desk.holds[next(next_hold)] = rng.choice(desk.works_to_hold())
        elif operation == "hold_cancel":
            del desk.holds[desk.hold_to_cancel(rng)]
    assert abs(done.count("checkout") - done.count("checkin")) <= len(desk.copies)
    assert 0 <= done.count("hold_place") - done.count("hold_cancel") <= MAX_OPEN_HOLDS
    assert done.count("checkout") / len(done) == pytest.approx(desk_day.mix_shares()["checkout"], abs=0.03)


def test_a_desk_retries_lost_answers_and_503_with_a_growing_pause():
    assert all(desk_day.retried(status) for status in (503, "timeout", "connection"))
    assert not any(desk_day.retried(status) for status in (200, 409, 422, 500, 504))
    assert [desk_day.backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert desk_day.transport_status(TimeoutError()) == "timeout"
    assert desk_day.transport_status(ConnectionResetError()) == "connection"
    assert desk_day.status_label(409, "ITEM_NOT_ON_LOAN") == "409:ITEM_NOT_ON_LOAN"
    assert desk_day.status_label(201) == 201


def event(operation, started, seconds=0.1, status=200, attempts=1):
    return desk_day.event_line(operation, started, seconds, status, attempts)


def test_the_event_log_reads_back_with_its_window():
    lines = [event("search_api", 99.0), desk_day.marker_line(desk_day.WINDOW_START, 100.0),
             event("checkout", 100.5, 0.25, 201), event("checkin", 101.0, 5.5, "409:REQUEST_ALREADY_DONE", 2),
             desk_day.marker_line(desk_day.WINDOW_END, 110.0)]
    start, end, events = desk_day.read_event_log("".join(lines).splitlines())
    assert (start, end) == (100.0, 110.0)
    assert [(e.operation, e.status, e.attempts) for e in events] == [
        ("search_api", 200, 1), ("checkout", 201, 1), ("checkin", "409:REQUEST_ALREADY_DONE", 2)]
    assert events[1].ended == pytest.approx(100.75)
    assert desk_day.read_event_log([event("checkout", 1.0)])[:2] == (None, None)


def test_figures_count_what_began_and_ended_in_the_window_and_time_only_the_successes():
    _start, _end, events = desk_day.read_event_log("".join([
        event("checkout", 9.9, 0.2),  # began before the window
        event("checkout", 10.0, 0.2, 201), event("checkout", 11.0, 0.4, 201),
        event("checkout", 12.0, 5.0, "503:SERVICE_UNAVAILABLE", 3),
        event("checkin", 13.0, 0.3, 200, 2),
        event("checkin", 19.9, 0.2),  # ended after it
    ]).splitlines())
    figures = desk_day.operation_figures(desk_day.within(events, 10.0, 20.0), 10.0)
    assert figures["operations"] == 4 and figures["ops_per_s"] == 0.4
    assert figures["errors"] == {"503:SERVICE_UNAVAILABLE": 1} and figures["retried"] == 2
    checkout = figures["per_operation"]["checkout"]
    assert (checkout["count"], checkout["done"], checkout["share"], checkout["ops_per_s"]) == (3, 2, 0.75, 0.3)
    assert (checkout["p50_ms"], checkout["max_ms"]) == (300.0, 400.0)  # the 503 is counted, not timed
    assert figures["per_operation"]["hold_place"]["count"] == 0
    assert "repair_copy" not in figures["per_operation"]


def test_an_answer_saying_the_operation_was_done_before_is_not_an_error():
    _start, _end, events = desk_day.read_event_log("".join([
        event("checkin", 1.0, 0.5, "409:REQUEST_ALREADY_DONE", 2),  # its first attempt took the copy in
        event("repair_copy", 2.0, 0.1, "409:ITEM_NOT_ON_LOAN"),  # the copy was on the shelf after all
        event("checkin", 3.0, 0.1, "409:ITEM_NOT_ON_LOAN"),  # a desk's own check-in that found no loan: wrong
    ]).splitlines())
    figures = desk_day.operation_figures(events, 10.0)
    assert figures["errors"] == {"409:ITEM_NOT_ON_LOAN": 1}
    assert figures["per_operation"]["checkin"]["done"] == 1
    assert figures["per_operation"]["repair_copy"]["errors"] == {}


def window_of(p50, p95, count=100, operations=("checkout",)):
    return {"per_operation": {operation: {"count": count, "p50_ms": p50, "p95_ms": p95}
                              for operation in operations}}


def test_a_steady_soak_has_no_drift():
    found = desk_day.drift(window_of(50, 90), window_of(60, 120), {"loans": 80.0}, {"loans": 90.0})
    assert found["verdict"] == "no drift" and found["drifted"] == []
    assert found["latency_ratio_last_to_first"]["checkout"] == {"p50_ms": 1.2, "p95_ms": 1.33}
    assert found["rss"]["loans"] == {"first_mib": 80.0, "last_mib": 90.0, "growth_mib": 10.0,
                                     "growth_percent": 12.5}


def test_drift_names_the_latency_and_the_memory_that_grew():
    found = desk_day.drift(window_of(50, 90), window_of(80, 90), {"loans": 80.0, "gateway": 90.0},
                           {"loans": 100.0, "gateway": 91.0})
    assert found["drifted"] == ["checkout p50 x1.6", "loans RSS +25%"]
    assert found["verdict"] == "drift: checkout p50 x1.6, loans RSS +25%"


def test_a_window_with_too_few_answers_is_not_read_as_drift():
    found = desk_day.drift(window_of(50, 90, count=5), window_of(500, 900), {}, {})
    assert found["latency_ratio_last_to_first"]["checkout"] == {"p50_ms": None, "p95_ms": None}
    assert found["verdict"] == "no drift"


def test_a_soak_is_cut_into_windows_by_when_each_operation_began():
    _start, _end, events = desk_day.read_event_log("".join(
        [event("search_api", 100.0 + offset, 0.1) for offset in (1, 2, 61, 62, 63, 125)]).splitlines())
    cut = desk_day.windows(events, 100.0, 60, 2)
    assert [window["per_operation"]["search_api"]["count"] for window in cut] == [2, 3]
    assert [(window["from_s"], window["to_s"]) for window in cut] == [(0, 60), (60, 120)]
