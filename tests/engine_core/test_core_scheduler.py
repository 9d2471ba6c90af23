"""The scheduler alone: plain requests, no threads, no model."""

from __future__ import annotations

import itertools

from asmr_daemon.engine.requests import Priority, Request, RequestStatus
from asmr_daemon.engine.scheduler import Scheduler

_ids = itertools.count()


def req(key: str, *, prompt: int = 10, new: int = 10, priority: Priority = Priority.BATCH,
        prepared: bool = True) -> Request:
    number = next(_ids)
    return Request(request_id=number, key=key, source=key, prompt=key, priority=priority, arrival=number,
                   prompt_ids=[0] * prompt if prepared else None, max_new_tokens=new)


def keys(plan) -> list[str]:
    return [r.key for r in plan.requests]


def test_status_order_and_request_order() -> None:
    assert RequestStatus.WAITING < RequestStatus.RUNNING < RequestStatus.FINISHED
    assert RequestStatus.CANCELLED.is_finished and not RequestStatus.RUNNING.is_finished
    a, b = req("a"), req("b", priority=Priority.INTERACTIVE)
    assert sorted([a, b]) == [b, a]


def test_interactive_before_batch_even_when_later() -> None:
    s = Scheduler(join_divisor=8)
    for k in "abc":
        s.add(req(k))
    s.add(req("x", priority=Priority.INTERACTIVE))
    s.add(req("y", priority=Priority.INTERACTIVE))
    plan = s.plan(max_batch=16, token_budget=10_000)
    # Editor rows first; the oldest batch rows (16 // 8 of them) go along and advance meanwhile.
    assert keys(plan) == ["x", "y", "a", "b"] and plan.priority is Priority.INTERACTIVE
    assert keys(s.plan(16, 10_000)) == ["c"]
    assert s.plan(16, 10_000) is None


def test_length_sorted_within_the_batch() -> None:
    s = Scheduler()
    for k, n in [("long", 50), ("short", 5), ("mid", 20)]:
        s.add(req(k, prompt=n))
    plan = s.plan(8, 10_000)
    assert keys(plan) == ["short", "mid", "long"]
    assert plan.padded_tokens == 3 * 60


def test_batch_size_respected_and_oldest_always_served() -> None:
    s = Scheduler(window_factor=2)
    lengths = [40, 5, 6, 7, 41, 42]  # oldest is long: it must not starve behind short ones
    for i, n in enumerate(lengths):
        s.add(req(f"r{i}", prompt=n))
    first = s.plan(max_batch=3, token_budget=10_000)
    assert len(first.requests) == 3 and "r0" in keys(first)
    assert keys(first) == ["r0", "r4", "r5"]  # window r0..r5 sorted: [r1 r2 r3] [r0 r4 r5]
    assert keys(s.plan(3, 10_000)) == ["r1", "r2", "r3"]


def test_token_budget_counts_padding() -> None:
    s = Scheduler()
    for k in "abcd":
        s.add(req(k, prompt=15, new=10))  # 25 tokens a row
    plan = s.plan(max_batch=8, token_budget=60)
    assert keys(plan) == ["a", "b"] and plan.padded_tokens == 50
    big = Scheduler()
    big.add(req("huge", prompt=500))
    assert keys(big.plan(8, 60)) == ["huge"]  # alone, rather than never


def test_unprepared_requests_are_not_planned() -> None:
    s = Scheduler()
    r = req("a", prepared=False)
    s.add(r)
    assert s.plan(8, 1000) is None and s.num_waiting == 1
    r.prompt_ids = [1, 2]
    assert keys(s.plan(8, 1000)) == ["a"]


def test_identical_keys_share_one_request_waiting_or_running() -> None:
    s = Scheduler()
    first = req("same")
    second = req("same")
    assert s.add(first) is first
    assert s.add(second) is first and s.num_waiting == 1
    s.plan(8, 1000)
    third = req("same")
    assert s.add(third) is first  # in flight: still computed once
    assert s.num_waiting == 0 and s.num_running == 1
    s.finish([first])
    assert s.num_running == 0 and first.status is RequestStatus.FINISHED
    fourth = req("same")
    assert s.add(fourth) is fourth  # finished work is the memory's business, not ours


def test_interactive_duplicate_upgrades_waiting_batch_request() -> None:
    s = Scheduler()
    for k in "abc":
        s.add(req(k))
    s.add(req("b", priority=Priority.INTERACTIVE))
    assert keys(s.plan(1, 1000)) == ["b"]
    batch_dup = req("a", priority=Priority.BATCH)
    s.add(batch_dup)
    assert s.plan(8, 1000).priority is Priority.BATCH  # a batch duplicate upgrades nothing


def test_abort_drops_a_waiting_request_once() -> None:
    s = Scheduler()
    a, b = req("a"), req("b")
    for r in (a, b):
        s.add(r)
    assert s.abort(b) and b.status is RequestStatus.CANCELLED
    assert not s.abort(b)  # idempotent
    assert not s.abort(req("unknown"))
    assert keys(s.plan(8, 1000)) == ["a"]


def test_abort_of_a_running_request_keeps_it_running() -> None:
    s = Scheduler()
    a = req("a")
    s.add(a)
    s.plan(8, 1000)
    assert not s.abort(a)
    assert a.status is RequestStatus.RUNNING and s.num_running == 1


def test_drain_returns_waiting_only() -> None:
    s = Scheduler()
    for k in "ab":
        s.add(req(k))
    s.plan(max_batch=1, token_budget=1000)
    drained = s.drain()
    assert [r.key for r in drained] == ["b"] and s.num_waiting == 0 and s.num_running == 1


def test_rows_an_editor_cut_short_join_its_plan() -> None:
    s = Scheduler(join_divisor=1)  # as many as the batch holds
    batch = [req(k) for k in "abcd"]
    for r in batch:
        s.add(r)
    running = s.plan(8, 1000)
    cut = [r for r in running.requests if r.key != "a"]
    s.finish([running.requests[0]])
    for r in cut:
        r.generated = [7, 7]
    s.requeue(cut)
    s.add(req("fresh"))
    s.add(req("later"))
    s.add(req("hover", priority=Priority.INTERACTIVE))
    plan = s.plan(5, 1000)  # the cut rows first, then the oldest fresh one, up to 5 rows
    assert keys(plan) == ["hover", "b", "c", "d", "fresh"] and plan.priority is Priority.INTERACTIVE
    assert keys(s.plan(5, 1000)) == ["later"]
    s.add(req("wide", prompt=100))
    s.add(req("hover2", priority=Priority.INTERACTIVE))
    assert keys(s.plan(5, 100)) == ["hover2"]  # joining would break the token budget


def test_retries_share_a_call_with_first_passes_and_isolated_rows_run_alone() -> None:
    s = Scheduler()
    a, b, c, d = (req(k) for k in "abcd")
    a.retry = b.retry = True
    c.alone = d.alone = True
    for r in (a, b, c, d, req("e"), req("f")):
        s.add(r)
    assert keys(s.plan(8, 1000)) == ["a", "b", "e", "f"]
    assert [keys(s.plan(8, 1000)) for _ in range(2)] == [["c"], ["d"]]


def test_an_editor_call_carries_a_few_batch_rows_along() -> None:
    s = Scheduler(join_divisor=8)  # 32 // 8 = 4 rows
    for i in range(40):
        s.add(req(f"b{i}"))
    s.add(req("hover", priority=Priority.INTERACTIVE))
    assert keys(s.plan(32, 100_000)) == ["hover", "b0", "b1", "b2", "b3"]


def test_new_rows_join_an_editor_call_only_while_they_fit_its_one_prefill_chunk() -> None:
    s = Scheduler(join_divisor=1, prefill_rows=4)  # the editor's row and 3 new rows: one chunk
    cut = [req(f"cut{i}") for i in range(3)]
    for r in cut:
        s.add(r)
    s.plan(8, 100_000)
    for r in cut:
        r.generated = [7]
    s.requeue(cut)
    for i in range(10):
        s.add(req(f"b{i}"))
    s.add(req("hover", priority=Priority.INTERACTIVE))
    # Rows cut short resume from their kept KV cache (no prefill), so they do not count.
    assert keys(s.plan(32, 100_000)) == ["hover", "cut0", "cut1", "cut2", "b0", "b1", "b2"]


def test_rows_join_a_running_batch_call_in_queue_order_up_to_the_first_that_is_not_its_own() -> None:
    s = Scheduler()
    for k in ("a", "b", "c", "d"):
        s.add(req(k))
    s.add(req("later", prepared=False))  # not tokenized yet: skipped, not a boundary
    other = req("other")
    other.identity = "other adapter"
    s.add(other)
    s.add(req("e"))
    running = list(s.plan(max_batch=2, token_budget=10_000).requests)
    assert [r.key for r in running] == ["a", "b"]
    joined = s.take("", 5, 10_000, running)
    # Up to the other adapter's request: it gets the next call, and what follows it waits too.
    assert [r.key for r in joined] == ["c", "d"] and all(r.status is RequestStatus.RUNNING for r in joined)
    assert s.take("", 5, 10_000, running + joined) == []
    assert [r.key for r in s.unprepared()] == ["later"] and s.unprepared() == []


def test_joining_rows_stay_within_the_token_budget_and_an_editor_at_the_head_stops_them() -> None:
    s = Scheduler()
    for i in range(6):
        s.add(req(f"b{i}", prompt=10, new=10))  # 20 tokens a row
    running = list(s.plan(max_batch=2, token_budget=10_000).requests)
    joined = s.take("", 10, 100, running)
    assert [r.key for r in joined] == ["b2", "b3", "b4"]  # 5 rows x 20 tokens = 100
    running += joined + s.take("", 10, 10_000, running + joined)
    s.add(req("hover", priority=Priority.INTERACTIVE))
    s.requeue(running)  # an editor cut the call: its rows queue behind the editor's request
    assert s.take("", 10, 10_000, []) == []


def test_joining_rows_are_the_length_sorted_run_that_holds_the_oldest() -> None:
    s = Scheduler()
    for key, prompt in (("run", 5), ("a", 10), ("b", 30), ("c", 12), ("d", 31)):
        s.add(req(key, prompt=prompt))
    for i in range(8):
        s.add(req(f"more{i}", prompt=50))  # the queue goes on beyond the head take looks at
    running = list(s.plan(max_batch=1, token_budget=10_000).requests)
    # One prefill for rows of like length: a and c now, b and d next.
    assert [r.key for r in s.take("", 2, 10_000, running, 1)] == ["a", "c"]
    assert [r.key for r in s.take("", 2, 10_000, running, 1)] == ["b", "d"]


def test_near_the_queues_end_the_longest_rows_join_first() -> None:
    """The whole queue in reach: the long rows join first and the short ones last (they end soon
    after), so the call does not end with a few long rows alone."""
    s = Scheduler()
    for key, prompt in (("run", 5), ("a", 10), ("b", 30), ("c", 12), ("d", 31), ("e", 11)):
        s.add(req(key, prompt=prompt))
    running = list(s.plan(max_batch=1, token_budget=10_000).requests)
    late = req("late", prepared=False)
    s.add(late)
    # A request not tokenized yet may be long: not the end of what is known.
    assert [r.key for r in s.take("", 2, 10_000, running, 1)] == ["a", "e"]
    late.prompt_ids = [0] * 20
    assert [r.key for r in s.take("", 2, 10_000, running, 1)] == ["d", "b"]
    assert [r.key for r in s.take("", 2, 10_000, running, 1)] == ["late", "c"]


def test_an_editors_request_joins_a_running_call_with_batch_rows_up_to_what_its_call_carries() -> None:
    s = Scheduler(join_divisor=2, prefill_rows=3)
    for k in "abcdef":
        s.add(req(k))
    running = list(s.plan(max_batch=4, token_budget=10_000).requests)  # a b c d
    assert s.join("", running, 4, 10_000) == []  # no editor waits: nothing joins
    other = req("other adapter's hover", priority=Priority.INTERACTIVE)
    other.identity = "other adapter"
    s.add(other)
    assert s.has_joinable_editor("") is False and s.join("", running, 4, 10_000) == []
    s.add(req("hover", priority=Priority.INTERACTIVE))
    assert s.has_joinable_editor("") and s.carried(4) == 2
    # Two batch rows still run (the worker parked the rest): the editor's call carries 2, so
    # none joins; with one running, the oldest waiting one joins with the editor's prefill.
    assert [r.key for r in s.join("", running[:2], 4, 10_000)] == ["hover"]
    s.add(req("hover 2", priority=Priority.INTERACTIVE))
    joined = s.join("", running[:1], 4, 10_000)
    assert [r.key for r in joined] == ["hover 2", "e"] and all(r.status is RequestStatus.RUNNING for r in joined)
    assert s.has_joinable_editor("") is False and s.has_waiting(Priority.INTERACTIVE)  # the other adapter's
