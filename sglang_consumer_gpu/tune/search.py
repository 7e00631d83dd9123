"""The search, free of any GPU: what to compile, what to time, in which order, and what wins.

Compilation, not timing, is what a search pays for on a real machine (seconds per kernel per
CPU core, against milliseconds per timing), so the search is organised around compiles:

1. **Local search in waves.** At every batch size M the candidates are SGLang's default and
   the plugin's heuristic for M, the heuristic's neighbours, the neighbours of the :data:`TOP`
   fastest configs at M (only those within :data:`DROP` of the best: a clearly worse config
   is not explored), and the :data:`TOP` fastest of the adjacent batch sizes. A wave compiles
   every candidate not compiled yet -- all batch sizes together, in parallel processes, one
   job per config holding each kernel specialization it needs (:mod:`.space`) -- and then
   times every new candidate once. A candidate whose eager launch already takes
   :data:`EARLY_EXIT` times the best eager launch at M is not graph-timed (eager against
   eager, so launch overhead at small M does not drop good configs). Waves repeat until no
   batch size has an untimed candidate: every batch size then sits at a local optimum of
   its :data:`TOP` configs.
2. **GROUP_SIZE_M** variants of the three fastest configs per batch size, where they can
   change the launch order (:func:`.space.group_variants`).
3. **Finalists.** Per batch size, the :data:`FINALISTS` fastest configs, the heuristic and
   SGLang's default are re-timed interleaved over several rounds (the single timings of a
   search move by 5-10 % at M = 1); the fastest that passes the correctness check against the
   float32 reference wins. SGLang runs both GEMMs of the layer with one config unless a
   ``_down`` file exists, so the layer is timed, and a separate down-projection config
   (the same BLOCK_SIZE_M: SGLang aligns the routing once) is kept only where it beats the
   shared config by :data:`SPLIT_GAIN` in the same interleaved rounds.

Everything the search learns is in the :class:`~.state.TuneState`, saved after every wave and
every finished batch size, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sglang_consumer_gpu.measure.compile import LATE
from sglang_consumer_gpu.measure.timer import Timing
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.tune.space import Space, block_m, group_variants, specialization, with_group
from sglang_consumer_gpu.tune.state import TuneState

TOP = 3
DROP = 1.25
EARLY_EXIT = 2.0
FINALISTS = 5
SPLIT_GAIN = 0.03
SPLIT_CANDIDATES = 2
MAX_WAVES = 12
#: Progress-bar weights (integers, so that the bar adds up exactly): a compile job costs
#: seconds of a worker, a timing tens of milliseconds, a finished batch size a few timings.
COMPILE_WORK, TIMING_WORK, FINISH_WORK = 50, 1, 12


@dataclass(frozen=True)
class Problem:
    """One layer to tune: shape, batch sizes, space, and the two named configs per batch size."""

    shape: MoeShape
    grid: tuple[int, ...]
    space: Space
    heuristic: dict[int, str]
    default: dict[int, str]

    def job_class(self, M: int, key: str) -> str:
        return specialization(self.shape, M, block_m(key))


class Bench(Protocol):
    """What the search needs from a GPU (:class:`~.bench.GpuBench`; tests use a fake)."""

    def now(self) -> float:
        """Seconds (monotonic)."""

    def compile(
        self, jobs: dict[str, list[int]], deadline: float | None, done: Callable[[], None]
    ) -> dict[str, str]:
        """Compile ``{config: [one batch size per specialization]}``: ``{config: ""}`` when it fits
        the target and compiled for all, else why not. ``done()`` after each config."""

    def time(self, M: int, key: str, skip_above_us: float | None) -> Timing:
        """One timing of both GEMMs with ``key`` at M (``skipped`` when the eager launch
        exceeded ``skip_above_us``); raises when the launch fails."""

    def compare(self, M: int, candidates: dict[str, tuple[str, str | None]]) -> dict[str, float]:
        """Interleaved median microseconds of ``{name: (config, down config or None)}`` at M."""

    def check(self, M: int, key: str, down: str | None) -> str:
        """ "" when the layer's outputs with ``key`` match the float32 reference, else why not."""


Progress = Callable[..., Any]  # tqdm-like: progress(n), progress.total


def _noop(*_: Any, **__: Any) -> None:
    return None


def during_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised while a Ctrl-C unwound the run: the KeyboardInterrupt can land
    inside the standard library's process-pool and lock code, whose cleanup then raises (on the
    H200: "RuntimeError: release unlocked lock"). Such an error is the interrupt, not a verdict
    on the config being compiled or timed."""
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


class Search:
    """Runs :func:`search`'s phases over a :class:`Problem` on a :class:`Bench` (see the module
    docstring). ``deadline`` (``bench.now()`` seconds): no new wave or refinement after it;
    the finalists always run. ``save()`` is called whenever the state changed."""

    def __init__(
        self,
        problem: Problem,
        bench: Bench,
        state: TuneState,
        *,
        deadline: float | None = None,
        save: Callable[[], None] = _noop,
        grow: Callable[[int], None] = _noop,
        step: Callable[[int], None] = _noop,
        say: Callable[[str], None] = _noop,
    ) -> None:
        self.p, self.bench, self.state = problem, bench, state
        self.deadline, self.save, self.grow, self.step, self.say = deadline, save, grow, step, say

    # -- what is known
    def _times(self, M: int) -> dict[str, float]:
        """Graph-timed configs at M (not the early-exited ones), fastest first."""
        t = {k: v[0] for k, v in self.state.timed.get(M, {}).items() if not v[2]}
        return dict(sorted(t.items(), key=lambda kv: (kv[1], kv[0])))

    def _best_estimate(self, M: int) -> float | None:
        ests = [v[1] for v in self.state.timed.get(M, {}).values()]
        return min(ests) if ests else None

    def _top(self, M: int, n: int = TOP, group_one: bool = False) -> list[str]:
        keys = [k for k in self._times(M) if not group_one or k == with_group(k, 1)]
        return keys[:n]

    def _usable(self, key: str) -> bool:
        return key not in self.state.failed

    def _out_of_time(self) -> bool:
        return self.deadline is not None and self.bench.now() > self.deadline

    def estimate(self) -> int:
        """Progress-bar work of a whole run, from the first wave: later waves have added about
        as much again on the H100's recorded timings (tests/test_tune_search.py)."""
        front = self.frontier()
        keys = {k for v in front.values() for k in v}
        wave = COMPILE_WORK * len(keys) + TIMING_WORK * sum(map(len, front.values()))
        return 2 * wave + FINISH_WORK * len(self.p.grid)

    # -- phase 1
    def frontier(self) -> dict[int, list[str]]:
        """Per batch size, the candidates not timed yet (see the module docstring)."""
        grid = list(self.p.grid)
        out: dict[int, list[str]] = {}
        for i, M in enumerate(grid):
            times = self._times(M)
            best = next(iter(times.values()), math.inf)
            cands = {self.p.heuristic[M], self.p.default[M], *self.p.space.neighbours(self.p.heuristic[M])}
            for k in self._top(M):
                if times[k] <= DROP * best:
                    cands.update(self.p.space.neighbours(k))
            for j in (i - 1, i + 1):
                if 0 <= j < len(grid):
                    cands.update(self._top(grid[j]))
            timed = self.state.timed.get(M, {})
            todo = sorted(k for k in cands if k not in timed and self._usable(k))
            if todo:
                out[M] = todo
        return out

    def _compile(self, wanted: dict[int, list[str]]) -> None:
        """Compile what ``wanted`` (M -> configs) needs and this run has not compiled yet."""
        jobs: dict[str, dict[str, int]] = {}
        for M, keys in sorted(wanted.items()):
            for k in keys:
                cls = self.p.job_class(M, k)
                if f"{k}@{cls}" not in self.state.compiled:
                    jobs.setdefault(k, {}).setdefault(cls, M)
        if not jobs:
            return
        self.grow(COMPILE_WORK * len(jobs))
        t0 = self.bench.now()
        result = self.bench.compile(
            {k: sorted(v.values()) for k, v in jobs.items()}, self.deadline, lambda: self.step(COMPILE_WORK)
        )
        c = self.state.counters
        c["compile_jobs"] = c.get("compile_jobs", 0) + len(jobs)
        c["kernel_variants"] = c.get("kernel_variants", 0) + sum(len(v) for v in jobs.values())
        c["compile_s"] = c.get("compile_s", 0) + self.bench.now() - t0
        for k, classes in jobs.items():
            why = result.get(k, LATE)
            if not why:
                self.state.compiled.update(f"{k}@{cls}" for cls in classes)
            elif why != LATE:  # a config not reached before the deadline may be tried on a rerun
                self.state.failed[k] = why
        self.save()

    def _ready(self, M: int, key: str) -> bool:
        return self._usable(key) and f"{key}@{self.p.job_class(M, key)}" in self.state.compiled

    def _time(self, wanted: dict[int, list[str]]) -> None:
        todo = {M: [k for k in keys if self._ready(M, k)] for M, keys in wanted.items()}
        self.grow(TIMING_WORK * sum(map(len, todo.values())))
        for M in sorted(todo):
            for k in todo[M]:
                est = self._best_estimate(M)
                try:
                    t = self.bench.time(M, k, None if est is None else EARLY_EXIT * est)
                except Exception as exc:
                    if during_interrupt(exc):
                        raise KeyboardInterrupt from exc
                    self.state.failed[k] = f"M={M}: {type(exc).__name__}: {str(exc)[:200]}"
                else:
                    self.state.timed.setdefault(M, {})[k] = [t.us, t.estimate_us, t.skipped]
                    self.state.counters["timings"] = self.state.counters.get("timings", 0) + 1
                self.step(TIMING_WORK)
            self.save()

    def explore(self) -> None:
        """Phase 1: waves until every batch size is at a local optimum (or out of time)."""
        while self.state.counters.get("waves", 0) < MAX_WAVES:
            front = self.frontier()
            if not front:
                return
            if self._out_of_time():
                self.state.notes.append("search stopped by the time budget before a local optimum")
                return
            self.state.counters["waves"] = self.state.counters.get("waves", 0) + 1
            self.say(f"wave {int(self.state.counters['waves'])}: {sum(map(len, front.values()))} timings")
            self._compile(front)
            self._time(front)
        self.state.notes.append(f"search stopped after {MAX_WAVES} waves")

    # -- phase 2
    def refine(self) -> None:
        """Phase 2: GROUP_SIZE_M variants of the three fastest GROUP_SIZE_M-1 configs."""
        if self._out_of_time() or self.state.counters.get("refined"):
            return
        wanted: dict[int, list[str]] = {}
        for M in self.p.grid:
            timed = self.state.timed.get(M, {})
            keys = [v for k in self._top(M, group_one=True) for v in group_variants(self.p.shape, M, k)]
            keys = [k for k in keys if k not in timed and self._usable(k)]
            if keys:
                wanted[M] = keys
        self._compile(wanted)
        self._time(wanted)
        self.state.counters["refined"] = 1
        self.save()

    # -- phase 3
    def finish(self) -> None:
        """Phase 3: per batch size, finalists re-timed interleaved; the winner checked."""
        left = [M for M in self.p.grid if M not in self.state.finished]
        self.grow(FINISH_WORK * len(left))
        for M in left:
            self.state.finished[M] = self._finish(M)
            self.step(FINISH_WORK)
            self.save()

    def _finish(self, M: int) -> dict[str, Any]:
        named = {"heuristic": self.p.heuristic[M], "default": self.p.default[M]}
        ranked = [k for k in self._times(M) if self._usable(k)]
        cands = {k: (k, None) for k in ranked[:FINALISTS]}
        cands.update(
            {k: (k, None) for k in named.values() if self._usable(k) and k in self.state.timed.get(M, {})}
        )
        if ranked:
            best = ranked[0]
            downs = [k for k in ranked[1:] if block_m(k) == block_m(best)][:SPLIT_CANDIDATES]
            cands.update({f"{best}|down {d}": (best, d) for d in downs})
        try:
            us = self.bench.compare(M, cands) if cands else {}
        except Exception as exc:  # a pairing with a separate down config is the one new launch here
            self.state.notes.append(f"M={M}: finalists with split configs failed ({type(exc).__name__}); shared only")
            cands = {n: v for n, v in cands.items() if v[1] is None}
            us = self.bench.compare(M, cands) if cands else {}
        shared = sorted((k for k in us if "|" not in k), key=lambda k: (us[k], k))
        chosen, why_not = None, {}
        for k in shared:
            why = self.bench.check(M, k, None)
            if not why:
                chosen = k
                break
            why_not[k] = why
            self.state.failed[k] = f"M={M}: wrong result: {why}"
        result: dict[str, Any] = {"finalists_us": us, "check_failed": why_not}
        for name, k in named.items():
            result[name] = {"config": k, "us": us.get(k), "why_not": self.state.failed.get(k)}
        if chosen is None:
            result["config"] = None
            return result
        result.update(config=chosen, us=us[chosen], down=None, down_us=None)
        splits = {n: cands[n][1] for n in us if n.startswith(f"{chosen}|down ")}
        if splits:
            n = min(splits, key=lambda x: us[x])
            if us[n] < (1 - SPLIT_GAIN) * us[chosen] and not self.bench.check(M, chosen, splits[n]):
                result.update(down=splits[n], down_us=us[n])
        return result

    def run(self) -> None:
        """All three phases; the state is saved however the run ends (an interrupt included)."""
        try:
            self.explore()
            self.refine()
            self.finish()
        finally:
            self.save()
