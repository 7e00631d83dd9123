"""The tuner's GPU side on the CPU: the oracle's fit check the compile workers run first, and the
timing/checking half of GpuBench through SGLang's kernel in the Triton interpreter."""

from __future__ import annotations

import time

from conftest import run_python_json

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.compile import LATE
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.tune.bench import CompileTask, compile_config, fit_problem

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
QWEN30 = MoeShape(128, 768, 2048, 8)
SMALL = {
    "BLOCK_SIZE_M": 16,
    "BLOCK_SIZE_N": 32,
    "BLOCK_SIZE_K": 128,
    "GROUP_SIZE_M": 1,
    "num_warps": 4,
    "num_stages": 5,
}
# SGLang's H100 tile from the users' report: 147,456 B on sm_89 ("Required: 147456, Hardware limit: 101376")
H100_TILE = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 8,
             "num_stages": 4}  # fmt: skip


def test_the_oracle_refuses_what_does_not_fit_the_target() -> None:
    assert fit_problem(RTX_4090, QWEN30, 64, SMALL) == ""
    why = fit_problem(RTX_4090, QWEN30, 64, H100_TILE)
    assert why.startswith("does not fit NVIDIA GeForce RTX 4090") and "limit 101376 B" in why


def test_a_task_past_its_deadline_is_late_not_failed() -> None:
    task = CompileTask(
        QWEN30, "bfloat16", tuple(sorted(SMALL.items())), (1, 2), RTX_4090, False, time.time() - 1
    )
    assert compile_config(task) == LATE


_INTERPRETED = """
import json, time
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.timer import Timer
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.tune.bench import GpuBench

class WallClock:
    def now(self): return time.monotonic()
    def burn(self, seconds): pass
    def elapsed_ms(self, run):
        t = time.perf_counter(); run(); return (time.perf_counter() - t) * 1e3
    def capture(self, run): return None

bench = GpuBench(MoeShape(4, 128, 256, 2), "float16", find_gpu("RTX 4090"), live_target=True, device="cpu",
                 timer=Timer(WallClock(), rounds=1, warm_s=0, sample_us=1, max_reps=2))
a, b = "16x32x64-g1-w4-s2", "16x64x64-g1-w4-s2"
t = bench.time(5, a, None)
skipped = bench.time(5, b, 1e-9)
us = bench.compare(5, {"a": (a, None), "split": (a, b)})
out = {"us": t.us, "skipped": skipped.skipped, "compare": sorted(us), "check": bench.check(5, a, b),
       "same_layer": bench.layer(5) is bench.layer(5), "layers": len(bench._layers)}
bench.layer(7)
out["layers_after"] = len(bench._layers)
bench.close()
print(json.dumps(out))
"""


def test_times_compares_and_checks_through_sglangs_kernel() -> None:
    out = run_python_json(_INTERPRETED, env={"TRITON_INTERPRET": "1"}, timeout=900)
    assert out["us"] > 0 and out["skipped"] is True
    assert out["compare"] == ["a", "split"] and out["check"] == ""
    assert out["same_layer"] and out["layers"] == 1 and out["layers_after"] == 2


def test_compile_workers_ask_the_oracle_first_and_report_instead_of_raising() -> None:
    """One spawned worker: the H100 tile is refused by the oracle before anything launches; a
    fitting config reaches the launch, which on a machine without a GPU fails with a reason."""
    from sglang_consumer_gpu.tune.bench import GpuBench

    bench = GpuBench(QWEN30, "bfloat16", RTX_4090, live_target=False, workers=1, device="cpu")
    done: list[int] = []
    try:
        out = bench.compile(
            {"128x128x128-g1-w8-s4": [64], "16x32x128-g1-w4-s5": [1, 2]}, None, lambda: done.append(1)
        )
    finally:
        bench.close()
    assert out["128x128x128-g1-w8-s4"].startswith("does not fit NVIDIA GeForce RTX 4090")
    assert out["16x32x128-g1-w4-s5"].startswith("M=1: ")  # the launch, not the oracle, failed
    assert len(done) == 2 and bench.compile_s > 0
