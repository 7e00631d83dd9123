"""The tuner's search on the CPU: a fake GPU (tests/_tune_fake.py, a cost model with a known
optimum) or the H100's recorded timings stand in for compiling and timing; the space, the
heuristic, the specializations and the state are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _tune_fake import QWEN30, FakeBench, cost

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.moe import parse_config_key
from sglang_consumer_gpu.measure.timer import Timing
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.tune import search as S
from sglang_consumer_gpu.tune.space import SGLANG_BATCH_SIZES, Space, key_of, specialization, with_group
from sglang_consumer_gpu.tune.state import TuneState

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
REPO = Path(__file__).resolve().parents[1]
DEFAULT = "16x32x64-g1-w4-s3"  # SGLang's 16-bit default at small M (not in the space: 3 stages)


def make_problem(grid: tuple[int, ...] = SGLANG_BATCH_SIZES) -> S.Problem:
    space = Space.for_shape(RTX_4090, QWEN30)
    return S.Problem(QWEN30, grid, space, {M: key_of(heuristic_config(M, QWEN30, RTX_4090)) for M in grid},
                     {M: DEFAULT for M in grid})  # fmt: skip


def exhaustive_best(prob: S.Problem, M: int) -> float:
    keys = [*prob.space.keys, prob.heuristic[M], prob.default[M]]
    keys += [with_group(k, g) for k in prob.space.keys for g in (16, 32, 64)]
    return min(cost(M, k) for k in keys)


def test_finds_what_exhaustive_finds_with_a_fraction_of_the_compiles() -> None:
    prob, bench = make_problem(), FakeBench()
    state = TuneState({})
    S.Search(prob, bench, state).run()
    for M in prob.grid:
        assert state.finished[M]["us"] == pytest.approx(exhaustive_best(prob, M)), M
    kernels = len(bench.compiled)
    exhaustive_kernels = sum(len({specialization(QWEN30, M, parse_config_key(k)["BLOCK_SIZE_M"])
                                  for M in prob.grid}) for k in prob.space.keys)  # fmt: skip
    assert kernels < exhaustive_kernels / 2, (kernels, exhaustive_kernels)
    assert state.counters["kernel_variants"] == kernels
    # one compile per (config, specialization); this shape has two: M = 1 and the even batch sizes
    classes = [(k, prob.job_class(M, k)) for k, M in bench.compiled]
    assert len(set(classes)) == len(classes) and max(bench.compiled.values()) == 1
    assert len({c for _, c in classes}) == 2
    # every batch size's heuristic and default were re-timed with the finalists
    assert all(state.finished[M]["heuristic"]["us"] and state.finished[M]["default"]["us"] for M in prob.grid)


def test_never_times_what_does_not_fit_or_compile() -> None:
    prob = make_problem((1, 64, 4096))
    unfit = frozenset(k for k in prob.space.keys if parse_config_key(k)["BLOCK_SIZE_N"] == 64)
    bench = FakeBench(unfit=unfit | {DEFAULT})
    state = TuneState({})
    S.Search(prob, bench, state).run()
    assert not {k for _, k in bench.timed} & (unfit | {DEFAULT})
    assert all(state.failed[k] == "does not fit" for k in unfit & set(state.failed))
    assert all(state.finished[M]["default"]["us"] is None for M in prob.grid)
    assert all(state.finished[M]["default"]["why_not"] == "does not fit" for M in prob.grid)


def test_clearly_worse_configs_exit_early() -> None:
    prob, bench = make_problem((4096,)), FakeBench()
    state = TuneState({})
    S.Search(prob, bench, state).run()
    skipped = [k for k, v in state.timed[4096].items() if v[2]]
    assert skipped and all(cost(4096, k) * 1.5 + 5 > S.EARLY_EXIT * min(v[1] for v in state.timed[4096].values())
                           for k in skipped)  # fmt: skip


def test_resumes_after_an_interrupt_without_repeating_work(tmp_path: Path) -> None:
    prob = make_problem((1, 16, 256, 4096))
    whole = FakeBench()
    ref = TuneState({"x": 1})
    S.Search(prob, whole, ref).run()

    path = tmp_path / "state.json"
    first = FakeBench(stop_after=len(whole.timed) // 2)
    state = TuneState({"x": 1})
    with pytest.raises(KeyboardInterrupt):
        S.Search(prob, first, state, save=lambda: state.save(path)).run()
    resumed, how = TuneState.load(path, {"x": 1})
    assert how.startswith("resumed")
    second = FakeBench()
    S.Search(prob, second, resumed, save=lambda: resumed.save(path)).run()
    assert {M: r["config"] for M, r in resumed.finished.items()} == {
        M: r["config"] for M, r in ref.finished.items()
    }
    assert not set(first.timed) & set(second.timed)  # the interrupt saved every timing made
    # the resumed run plans its first wave from everything saved, the cut wave's timings included,
    # so it may drop a candidate the uninterrupted run still timed; it never times more
    assert len(first.timed) + len(second.timed) <= len(whole.timed)
    assert TuneState.load(path, {"x": 2})[1].startswith("ignored")  # another fingerprint: fresh


def test_a_late_compile_is_not_a_failure() -> None:
    prob = make_problem((64,))
    late = frozenset(prob.space.neighbours(prob.heuristic[64])[:3])
    state = TuneState({})
    S.Search(prob, FakeBench(late=late), state).run()
    assert not late & set(state.failed)


def test_a_wrong_result_is_never_chosen() -> None:
    prob = make_problem((256,))
    state = TuneState({})
    S.Search(prob, FakeBench(), state).run()
    best = state.finished[256]["config"]
    state2 = TuneState({})
    S.Search(prob, FakeBench(wrong=frozenset({best})), state2).run()
    assert state2.finished[256]["config"] not in (None, best)
    assert best in state2.finished[256]["check_failed"]


@pytest.mark.parametrize(("gain", "split"), [(0.0, False), (0.02, False), (0.05, True)])
def test_a_down_config_only_where_it_wins_clearly(gain: float, split: bool) -> None:
    prob = make_problem((64,))
    state = TuneState({})
    S.Search(prob, FakeBench(split_gain=gain), state).run()
    r = state.finished[64]
    assert (r["down"] is not None) is split
    if split:
        assert parse_config_key(r["down"])["BLOCK_SIZE_M"] == parse_config_key(r["config"])["BLOCK_SIZE_M"]


def test_budget_stops_the_search_but_every_batch_size_gets_a_config() -> None:
    prob = make_problem()
    bench = FakeBench()
    state = TuneState({})
    S.Search(prob, bench, state, deadline=1.0).run()  # the first wave's compiles pass the deadline
    assert state.counters["waves"] == 1 and state.notes
    assert all(state.finished[M]["config"] for M in prob.grid)


class Replay:
    """The H100's recorded timings (run 1, tests/fixtures/results/h100_moe_bench.json: every config of the space at
    7 batch sizes; early-exited ones at their eager time) as a GPU that always answers the same."""

    def __init__(self, data: dict[int, dict[str, float]]) -> None:
        self.data, self.jobs, self.kernels, self.timings = data, 0, 0, 0

    def now(self) -> float:
        return 0.0

    def compile(self, jobs: dict[str, list[int]], deadline: float | None, done: Any) -> dict[str, str]:
        self.jobs += len(jobs)
        self.kernels += sum(map(len, jobs.values()))
        return {
            k: "" if any(k in d or with_group(k, 1) in d for d in self.data.values()) else "absent"
            for k in jobs
        }

    def us(self, M: int, key: str) -> float:
        d = self.data[M]
        return d[key] if key in d else d[with_group(key, 1)]  # GROUP_SIZE_M variants not recorded: no effect

    def time(self, M: int, key: str, skip_above_us: float | None) -> Timing:
        self.timings += 1
        us = self.us(M, key)
        return Timing(us=us, samples=(us,), reps=1, graphed=True, estimate_us=1.3 * us + 8)

    def compare(self, M: int, candidates: dict[str, tuple[str, str | None]]) -> dict[str, float]:
        return {n: self.us(M, k) for n, (k, _) in candidates.items()}

    def check(self, M: int, key: str, down: str | None) -> str:
        return ""


@pytest.mark.parametrize("case", range(6))
def test_on_the_h100s_recorded_timings(case: int) -> None:
    """Run 1 timed the whole space at M = 1..4096 for three shapes and two dtypes. On those
    timings the search picks, at every batch size, a config within 1.5 % of the space's best
    GROUP_SIZE_M-1 config (run 1's GROUP_SIZE_M winners at M <= 64 were clock warm-up
    artefacts: their launch order cannot matter there), compiling 40-60 % of the kernels and
    timing under a third of the (config, batch size) pairs that an exhaustive sweep does.
    Batch sizes where run 1 graph-timed under half the space are not judged: there the early
    exit kept eager estimates (launch-bound, about 280 us at M = 1 against a 16-40 us kernel),
    and the recorded best is whichever few configs were graph-timed."""
    c = json.loads((REPO / "tests" / "fixtures" / "results" / "h100_moe_bench.json").read_text())["cases"][case]
    shape = MoeShape(c["E"], c["N"], c["K"], c["topk"], c["dtype"])
    data, default, judged = {}, {}, []
    for p in c["points"]:
        default[p["M"]] = key_of(p["default"]["config"])
        data[p["M"]] = {**p["skipped_eager_us"], **p["space_us"], default[p["M"]]: p["default"]["us"]}
        if len(p["space_us"]) >= len(p["skipped_eager_us"]):
            judged.append(p["M"])
    grid = tuple(sorted(data))
    prob = S.Problem(shape, grid, Space.for_shape(RTX_4090, shape),
                     {M: key_of(heuristic_config(M, shape, RTX_4090)) for M in grid}, default)  # fmt: skip
    bench, state = Replay(data), TuneState({})
    S.Search(prob, bench, state).run()
    assert len(judged) >= 4
    for M in judged:
        best = min(v for k, v in data[M].items() if k == with_group(k, 1))
        assert best / state.finished[M]["us"] >= 0.985, (M, state.finished[M]["config"])
    exhaustive = sum(len({prob.job_class(M, k) for M in grid}) for k in prob.space.keys)
    assert bench.kernels < 0.6 * exhaustive
    assert bench.timings < len(prob.space) * len(grid) / 3
