"""The timer's scheduling logic, on a fake clock (no GPU): warm-up, reps, graphs, interleaving, medians."""

from __future__ import annotations

from typing import Any

import pytest

from sglang_consumer_gpu.measure.compile import LATE, chunks, describe, precompile
from sglang_consumer_gpu.measure.timer import Timer, Timing, rotation_slots


class FakeClock:
    """A device whose calls cost ``cost_us[name]`` at full clock speed and ``slow`` times more
    until ``warm_after_s`` seconds of burning; records every call and every burn."""

    def __init__(self, cost_us: dict[str, float], *, slow: float = 2.5, warm_after_s: float = 2.0,
                 refuse_capture: bool = False) -> None:  # fmt: skip
        self.cost_us, self.slow, self.warm_after_s = cost_us, slow, warm_after_s
        self.t = 0.0
        self.burned = 0.0
        self.burns: list[float] = []
        self.calls: list[str] = []
        self.refuse_capture = refuse_capture
        self.captures = 0
        self._device_us = 0.0

    def speed(self) -> float:
        return 1.0 if self.burned >= self.warm_after_s else self.slow

    def call(self, name: str, i: int) -> None:
        self.calls.append(f"{name}:{i}")
        self._device_us += self.cost_us[name] * self.speed()

    def now(self) -> float:
        return self.t

    def burn(self, seconds: float) -> None:
        self.burns.append(seconds)
        self.burned += seconds
        self.t += seconds

    def elapsed_ms(self, run: Any) -> float:
        self._device_us = 0.0
        run()
        self.t += self._device_us / 1e6
        return self._device_us / 1000.0

    def capture(self, run: Any) -> Any:
        if self.refuse_capture:
            return None
        self.captures += 1
        return run

    def idle(self, seconds: float) -> None:
        self.t += seconds


def fn(clock: FakeClock, name: str) -> Any:
    return lambda i: clock.call(name, i)


def test_clocks_are_brought_up_before_the_first_sample() -> None:
    clock = FakeClock({"a": 10.0})
    timing = Timer(clock, warm_s=3.0).time(fn(clock, "a"))
    assert clock.burns[0] == 3.0
    assert timing.us == pytest.approx(10.0)  # a cold clock would have read 25 us


def test_without_warm_up_the_fake_clock_reads_slow() -> None:
    """The fake can fail the test above: with no warm-up the same call reads 2.5x slower."""
    clock = FakeClock({"a": 10.0})
    assert Timer(clock, warm_s=0.0, rewarm_s=0.0).time(fn(clock, "a")).us == pytest.approx(25.0)


def test_rewarm_after_idle_only() -> None:
    clock = FakeClock({"a": 10.0})
    timer = Timer(clock, warm_s=3.0, idle_s=1.0, rewarm_s=0.5)
    timer.time(fn(clock, "a"))
    timer.time(fn(clock, "a"))
    assert clock.burns == [3.0]  # back to back: no second warm-up
    clock.idle(30.0)  # e.g. a compile phase
    timer.time(fn(clock, "a"))
    assert clock.burns == [3.0, 0.5]
    assert timer.warmed_s == 3.5


def test_reps_fill_a_sample_and_use_every_slot_equally() -> None:
    clock = FakeClock({"a": 7.0})
    t = Timer(clock, sample_us=1000.0, max_reps=500).time(fn(clock, "a"), slots=3)
    assert t.reps % 3 == 0 and t.reps * 7.0 >= 1000.0
    replayed = clock.calls[-t.reps :]
    assert sorted({c.split(":")[1] for c in replayed}) == ["0", "1", "2"]
    assert [c.split(":")[1] for c in replayed].count("0") == t.reps // 3


def test_reps_capped_for_long_calls() -> None:
    clock = FakeClock({"a": 5000.0})
    t = Timer(clock, sample_us=1000.0).time(fn(clock, "a"), slots=2)
    assert t.reps == 2  # at least one call per slot, even when one call is longer than a sample


def test_graph_capture_refused_falls_back_to_eager_samples() -> None:
    clock = FakeClock({"a": 10.0}, refuse_capture=True)
    t = Timer(clock).time(fn(clock, "a"))
    assert not t.graphed and t.us == pytest.approx(10.0)
    clock2 = FakeClock({"a": 10.0})
    assert Timer(clock2).time(fn(clock2, "a")).graphed and clock2.captures == 1


def test_skip_above_returns_the_eager_estimate_without_a_graph() -> None:
    clock = FakeClock({"a": 50.0})
    t = Timer(clock).time(fn(clock, "a"), skip_above_us=20.0)
    assert t.skipped and t.us == pytest.approx(50.0) and clock.captures == 0


def test_compare_interleaves_and_rotates_the_order() -> None:
    clock = FakeClock({"a": 10.0, "b": 20.0, "c": 30.0})
    timer = Timer(clock, sample_us=10.0, max_reps=1, rounds=4)
    res = timer.compare({k: fn(clock, k) for k in "abc"})
    assert {k: round(v.us) for k, v in res.items()} == {"a": 10, "b": 20, "c": 30}
    assert all(len(v.samples) == 4 for v in res.values())
    # After the estimate calls: one sample per candidate per round, order rotating / reversing.
    sampled = [c.split(":")[0] for c in clock.calls[-12:]]
    rounds = [sampled[i : i + 3] for i in range(0, 12, 3)]
    assert rounds == [["a", "b", "c"], ["a", "c", "b"], ["c", "a", "b"], ["c", "b", "a"]]


def test_compare_median_resists_a_drift() -> None:
    """A slowdown hitting one round is in every candidate's samples once, and the median drops it."""
    clock = FakeClock({"a": 10.0, "b": 12.0})
    timer = Timer(clock, sample_us=10.0, max_reps=1, rounds=5)
    real = clock.elapsed_ms
    count = {"n": 0}

    def drifting(run: Any) -> float:
        count["n"] += 1
        ms = real(run)
        return ms * 3 if count["n"] in (7, 8) else ms  # one round, both candidates, 3x slower

    clock.elapsed_ms = drifting  # type: ignore[method-assign]
    res = timer.compare({"a": fn(clock, "a"), "b": fn(clock, "b")})
    assert res["a"].us == pytest.approx(10.0) and res["b"].us == pytest.approx(12.0)
    assert max(res["a"].samples) == pytest.approx(30.0)
    assert res["a"].spread > 1.0


def test_timing_to_dict() -> None:
    t = Timing(us=2.0, samples=(1.0, 2.0, 3.0), reps=4, graphed=True, estimate_us=5.0)
    d = t.to_dict()
    assert d["spread"] == pytest.approx(1.0) and d["samples_us"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("bytes_per_call", "l2", "want"),
    [(1e9, 50e6, 1), (10e6, 50e6, 10), (1.0, 50e6, 16), (0.0, 50e6, 16), (40e6, 50e6, 3)],
)
def test_rotation_slots(bytes_per_call: float, l2: float, want: int) -> None:
    assert rotation_slots(bytes_per_call, int(l2)) == want


# ------------------------------------------------------------------------------ compile scheduling


class FakeJob:
    """A compile job whose warm() fails for names starting with 'bad'."""

    def __init__(self, name: str, group: str, cost: float = 1.0) -> None:
        self.key, self.group, self.cost = name, group, cost

    def warm(self) -> None:
        if self.key.startswith("bad"):
            raise RuntimeError("OutOfResources: shared memory, Required: 106496, Hardware limit: 101376")


def test_chunks_keep_groups_whole_and_balance() -> None:
    jobs = [FakeJob(f"{g}{i}", g, cost) for g, cost in (("big", 9.0), ("mid", 4.0), ("small", 1.0))
            for i in range(3)]  # fmt: skip
    parts = chunks(jobs, 2, first=["small2"])
    assert len(parts) == 2
    for part in parts:
        groups = {j.group for j in part}
        for g in groups:  # a group is never split between workers
            assert all(j in part for j in jobs if j.group == g)
    assert [j.group for j in parts[0]][:3] == ["big"] * 3  # costliest first
    small = next(p for p in parts if any(j.group == "small" for j in p))
    assert small[0].key == "small2"  # jobs named first go first


def test_chunks_dedupe_keys() -> None:
    jobs = [FakeJob("a", "g"), FakeJob("a", "g"), FakeJob("b", "g")]
    assert sum(len(p) for p in chunks(jobs, 4)) == 2


def test_precompile_in_process_reports_failures_and_deadline() -> None:
    jobs = [FakeJob("ok1", "g1"), FakeJob("bad1", "g2")]
    res = precompile(jobs, workers=1)
    assert res["ok1"] == "" and res["bad1"].startswith("RuntimeError: OutOfResources")
    assert describe(res)["failed"] == 1
    late = precompile(jobs, workers=1, deadline=0.0)
    assert set(late.values()) == {LATE} and describe(late)["late"] == 2
