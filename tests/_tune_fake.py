"""A fake GPU for the tuner's CPU tests: compiling is bookkeeping, timing is a cost model
with a known optimum (convex in log2 of each block size, a GROUP_SIZE_M bonus only where an
expert has several M-blocks), so the exhaustive best is known exactly."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from sglang_consumer_gpu.measure.compile import LATE
from sglang_consumer_gpu.measure.moe import parse_config_key
from sglang_consumer_gpu.measure.timer import Timing
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.tune.space import tokens_per_expert

QWEN30 = MoeShape(128, 768, 2048, 8)


def ideal(M: int) -> dict[str, float]:
    """The fake GPU's best tile per batch size: grows with M like a real one."""
    lg = math.log2(M)
    return {"BLOCK_SIZE_M": 16 * 2 ** min(3, max(0, lg - 5) / 2), "BLOCK_SIZE_N": 32 * 2 ** min(3, lg / 4),
            "BLOCK_SIZE_K": 128 if M < 256 else 64, "num_stages": 4 if M < 512 else 3,
            "num_warps": 4 if M < 512 else 8}  # fmt: skip


def cost(M: int, key: str) -> float:
    """A smooth landscape (convex in log2 of each block size) with a 3 % L2 bonus for grouped
    launches where experts have several M-blocks: the exhaustive best is known exactly."""
    c, want = parse_config_key(key), ideal(M)
    pen = sum(w * abs(math.log2(c[k] / want[k])) for k, w in
              (("BLOCK_SIZE_M", 0.25), ("BLOCK_SIZE_N", 0.12), ("BLOCK_SIZE_K", 0.06)))  # fmt: skip
    pen += 0.02 * abs(c["num_stages"] - want["num_stages"]) + 0.03 * (c["num_warps"] != want["num_warps"])
    if c["GROUP_SIZE_M"] > 1:
        pen -= 0.03 if tokens_per_expert(QWEN30, M) >= 2 * c["BLOCK_SIZE_M"] else -0.001
    return (10.0 + M / 8) * (1 + pen)


class FakeBench:
    """Compiles by bookkeeping, times by :func:`cost`. ``unfit``: configs the oracle rejects;
    ``wrong``: configs whose results are wrong; ``stop_after``: raise KeyboardInterrupt at
    that many timings (an interrupted run)."""

    def __init__(self, unfit: frozenset[str] = frozenset(), wrong: frozenset[str] = frozenset(),
                 stop_after: int | None = None, split_gain: float = 0.0, late: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self.unfit, self.wrong, self.stop_after, self.split_gain, self.late = (
            unfit,
            wrong,
            stop_after,
            split_gain,
            late,
        )
        self.compiled: Counter[tuple[str, int]] = Counter()
        self.timed: list[tuple[int, str]] = []
        self.clock = 0.0

    def now(self) -> float:
        return self.clock

    def compile(self, jobs: dict[str, list[int]], deadline: float | None, done: Any) -> dict[str, str]:
        out = {}
        for key, Ms in jobs.items():
            self.clock += 4.0
            for M in Ms:
                self.compiled[(key, M)] += 1
            out[key] = LATE if key in self.late else ("does not fit" if key in self.unfit else "")
            done()
        return out

    def time(self, M: int, key: str, skip_above_us: float | None) -> Timing:
        if self.stop_after is not None and len(self.timed) >= self.stop_after:
            raise KeyboardInterrupt
        assert key not in self.unfit, "a config that does not fit was timed"
        self.timed.append((M, key))
        self.clock += 0.03
        us = cost(M, key)
        est = 1.5 * us + 5
        skipped = skip_above_us is not None and est > skip_above_us
        return Timing(us=est if skipped else us, samples=(us,), reps=1, graphed=not skipped, estimate_us=est,
                      skipped=skipped)  # fmt: skip

    def compare(self, M: int, candidates: dict[str, tuple[str, str | None]]) -> dict[str, float]:
        return {n: cost(M, k) * (1 - self.split_gain if d else 1) for n, (k, d) in candidates.items()}

    def check(self, M: int, key: str, down: str | None) -> str:
        return "wrong" if key in self.wrong else ""
