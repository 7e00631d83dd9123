"""One timer for every GPU measurement: CUDA graphs, rotated inputs, warm clocks, interleaved rounds.

Why each piece (DESIGN.md 3b, measured on the device machine):

- **CUDA graphs.** SGLang decodes under CUDA graphs, so launch gaps are not what a user sees;
  at batch size 1 a fused-MoE layer is ~15 us and eager launch overhead is of the same order.
  A sample is one replay of a graph of ``reps`` calls, divided by ``reps``.
- **Rotated inputs.** A call that re-reads the same few MB serves them from L2 from the second
  call on, and a real forward pass reads each layer's weights once per step. The timer calls
  ``fn(i)`` with ``i`` running over ``slots`` input sets that the caller built to exceed L2
  together (:func:`rotation_slots`); ``reps`` is a multiple of ``slots``.
- **Clocks up first.** An idle GPU runs at a few hundred MHz: the first timings of a process ran
  up to 2.5x slower for the same config. :meth:`Timer.ensure_warm` runs a few seconds of
  matmuls before the first sample, and again (shorter) after the GPU sat idle (a tuner compiles
  for a minute between timings).
- **Interleaved rounds, median.** Batch-size-1 points moved 5-10 % between rounds of one sweep.
  :meth:`Timer.compare` samples every candidate once per round, in a rotating order, and takes
  each candidate's median over the rounds, so a clock or neighbour drift hits all candidates
  alike instead of whichever was timed last.

The GPU is reached only through a :class:`Clock` (:class:`CudaClock` on a live GPU), so the
scheduling logic is tested on a CPU with a fake clock.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
Call = Callable[[int], Any]  # fn(i): one call on input set i (0 <= i < slots)


class Clock(Protocol):
    """What the timer needs from a device."""

    def now(self) -> float:
        """Host seconds (monotonic)."""

    def burn(self, seconds: float) -> None:
        """Keep the GPU busy for about ``seconds`` (brings its clocks up)."""

    def elapsed_ms(self, run: Callable[[], Any]) -> float:
        """Device milliseconds of ``run()``, measured with events; returns when the device is done."""

    def capture(self, run: Callable[[], Any]) -> Callable[[], Any] | None:
        """A graph of ``run()`` that replays it, or None when capture is refused."""


@dataclass(frozen=True)
class Timing:
    """Microseconds per call: the median of ``samples`` (each the mean of ``reps`` calls)."""

    us: float
    samples: tuple[float, ...]
    reps: int
    graphed: bool
    estimate_us: float  # one eager call before any timing (launch gaps included)
    skipped: bool = False  # estimate above ``skip_above_us``: ``us`` is the eager estimate

    @property
    def spread(self) -> float:
        """(max - min) / median of the samples: the noise this timing carries."""
        if len(self.samples) < 2 or self.us <= 0:
            return 0.0
        return (max(self.samples) - min(self.samples)) / self.us

    def to_dict(self) -> dict[str, Any]:
        return {
            "us": self.us,
            "samples_us": list(self.samples),
            "reps": self.reps,
            "graphed": self.graphed,
            "estimate_us": self.estimate_us,
            "skipped": self.skipped,
            "spread": self.spread,
        }


class _Sampler:
    """One candidate, ready to sample: graph captured (or eager fallback)."""

    def __init__(self, clock: Clock, fn: Call, slots: int, reps: int, estimate_us: float) -> None:
        self.clock, self.reps, self.estimate_us = clock, reps, estimate_us

        def run() -> None:
            for i in range(reps):
                fn(i % slots)

        self.replay = clock.capture(run)
        self.graphed = self.replay is not None
        self._run = self.replay or run
        if self.graphed:
            self.clock.elapsed_ms(self._run)  # first replay uploads the graph: not a sample
        self.samples: list[float] = []

    def sample(self) -> None:
        self.samples.append(self.clock.elapsed_ms(self._run) * 1000.0 / self.reps)

    def timing(self) -> Timing:
        return Timing(
            us=statistics.median(self.samples),
            samples=tuple(self.samples),
            reps=self.reps,
            graphed=self.graphed,
            estimate_us=self.estimate_us,
        )


class Timer:
    """Times ``fn(i)`` calls on the GPU (see the module docstring for the method).

    ``sample_us``: device time one sample aims at (reps = sample_us / eager estimate, at least
    ``slots``, at most ``max_reps``, a multiple of ``slots``); ``rounds``: samples per
    candidate; ``warm_s``: matmuls before the first sample; after ``idle_s`` without a sample,
    ``rewarm_s`` more.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        sample_us: float = 2000.0,
        max_reps: int = 200,
        rounds: int = 5,
        warm_s: float = 3.0,
        idle_s: float = 1.0,
        rewarm_s: float = 0.5,
    ) -> None:
        self.clock = clock if clock is not None else CudaClock()
        self.sample_us, self.max_reps, self.rounds = sample_us, max_reps, rounds
        self.warm_s, self.idle_s, self.rewarm_s = warm_s, idle_s, rewarm_s
        self._busy_at: float | None = None  # when the GPU last did timed or warming work
        self.warmed_s = 0.0  # total seconds spent bringing clocks up (reported by callers)

    def ensure_warm(self) -> None:
        """Bring the clocks up before the first sample, and after the GPU idled."""
        now = self.clock.now()
        if self._busy_at is None:
            seconds = self.warm_s
        elif now - self._busy_at > self.idle_s:
            seconds = self.rewarm_s
        else:
            return
        if seconds > 0:
            self.clock.burn(seconds)
            self.warmed_s += seconds
        self._busy_at = self.clock.now()

    def _touch(self) -> None:
        self._busy_at = self.clock.now()

    def _reps(self, estimate_us: float, slots: int) -> int:
        reps = min(self.max_reps, max(1, math.ceil(self.sample_us / max(estimate_us, 1e-3))))
        return max(slots, -(-reps // slots) * slots)

    def _estimate(self, fn: Call, slots: int) -> float:
        fn(0)  # first call: compile / load, never timed
        return self.clock.elapsed_ms(lambda: fn(1 % slots)) * 1000.0

    def time(self, fn: Call, slots: int = 1, *, skip_above_us: float | None = None) -> Timing:
        """Median microseconds per call of ``fn`` over ``rounds`` back-to-back samples.

        ``skip_above_us``: if one eager call already takes longer (an upper bound on the graph
        time), return that estimate marked ``skipped`` without graph timing (a search's early
        exit for configs that cannot win)."""
        self.ensure_warm()
        est = self._estimate(fn, slots)
        if skip_above_us is not None and est > skip_above_us:
            self._touch()
            return Timing(us=est, samples=(est,), reps=1, graphed=False, estimate_us=est, skipped=True)
        sampler = _Sampler(self.clock, fn, slots, self._reps(est, slots), est)
        for _ in range(self.rounds):
            sampler.sample()
        self._touch()
        return sampler.timing()

    def compare(
        self, fns: Mapping[K, Call], slots: int | Mapping[K, int] = 1, *, rounds: int | None = None
    ) -> dict[K, Timing]:
        """Time several candidates interleaved: each round samples every candidate once, the
        order rotating from round to round (and reversed every other round); per candidate
        the median over rounds. Use for finalists and for any ratio that is reported."""
        keys = list(fns)
        if not keys:
            return {}
        n_slots = {k: slots[k] if isinstance(slots, Mapping) else slots for k in keys}
        self.ensure_warm()
        samplers: dict[K, _Sampler] = {}
        for k in keys:
            est = self._estimate(fns[k], n_slots[k])
            samplers[k] = _Sampler(self.clock, fns[k], n_slots[k], self._reps(est, n_slots[k]), est)
        self._touch()
        for r in range(rounds or self.rounds):
            order = keys[r % len(keys) :] + keys[: r % len(keys)]
            if r % 2:
                order.reverse()
            for k in order:
                self.ensure_warm()
                samplers[k].sample()
                self._touch()
        return {k: samplers[k].timing() for k in keys}


def rotation_slots(bytes_per_call: float, l2_bytes: int, *, limit: int = 16) -> int:
    """Input sets to rotate through so that consecutive calls of one set are more than twice
    the L2 size apart in bytes read (1 when one call already reads that much)."""
    if bytes_per_call <= 0:
        return limit
    return max(1, min(limit, math.ceil(2 * l2_bytes / bytes_per_call)))


def device_l2(device: str, l2: int | None = None) -> int:
    """``l2`` if given, else the L2 size of the CUDA device (50 MB, an H100's, elsewhere)."""
    if l2 is not None:
        return l2
    return l2_bytes() if device == "cuda" else 50 * 1024 * 1024


# ------------------------------------------------------------------------------ live GPU


class CudaClock:
    """:class:`Clock` on the current CUDA device (events, torch.cuda graphs, bf16 matmuls)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._burn_operand: Any = None

    def now(self) -> float:
        return time.monotonic()

    def burn(self, seconds: float) -> None:
        t = self.torch
        if self._burn_operand is None:
            self._burn_operand = t.randn(4096, 4096, device="cuda", dtype=t.bfloat16)
        a = self._burn_operand
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(8):
                a @ a
            t.cuda.synchronize()

    def elapsed_ms(self, run: Callable[[], Any]) -> float:
        self._start.record()
        run()
        self._end.record()
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))

    def capture(self, run: Callable[[], Any]) -> Callable[[], Any] | None:
        t = self.torch
        t.cuda.synchronize()
        graph = t.cuda.CUDAGraph()
        try:
            with t.cuda.graph(graph):
                run()
        except RuntimeError:  # capture refused (a host sync inside): eager samples instead
            t.cuda.synchronize()
            return None
        return graph.replay


def l2_bytes(default: int = 50 * 1024 * 1024) -> int:
    """L2 size of the current CUDA device (``default`` where torch does not say)."""
    import torch

    return (
        int(getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 0))
        or default
    )
