"""``tune-moe`` with the fake GPU whose compile wave runs in the engine's real worker pool, for
the Ctrl-C test: ``python _tune_interrupted.py OUT_DIR MARKER``. The first compile wave touches
MARKER once its jobs are queued, then waits on the workers (each job sleeps), so a SIGINT sent to
the process group after MARKER appears lands while workers are busy -- as a user's Ctrl-C does."""

from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

from _tune_fake import FakeBench

from sglang_consumer_gpu.measure.compile import spawn_pool


class PooledFakeBench(FakeBench):
    """FakeBench with its compiles waited on in :func:`spawn_pool`'s processes."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker, self.pool = marker, None

    def compile(self, jobs: dict[str, list[int]], deadline: float | None, done: Any) -> dict[str, str]:
        if self.pool is None:
            self.pool = spawn_pool(2)
        pending = {self.pool.submit(time.sleep, 0.5): k for k in jobs}
        self.marker.touch()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending.pop(fut)
                fut.result()
        return super().compile(jobs, deadline, done)


def main() -> int:
    from sglang_consumer_gpu import cli
    from sglang_consumer_gpu.cli import tune_moe
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.tune import bench as bench_mod

    out, marker = Path(sys.argv[1]), Path(sys.argv[2])
    tune_moe.live_gpu = lambda: find_gpu("NVIDIA GeForce RTX 4090")
    bench_mod.GpuBench = lambda *_, **__: PooledFakeBench(marker)
    args = ["--E", "128", "--N", "768", "--K", "2048", "--topk", "8", "--batch-sizes", "1,4,64,1024"]
    return cli.main(["tune-moe", *args, "--output", str(out)])


if __name__ == "__main__":  # spawned workers import this file too
    sys.exit(main())
