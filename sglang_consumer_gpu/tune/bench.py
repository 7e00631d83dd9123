"""The search's GPU side: compile processes that ask the oracle first, SGLang's kernel, one timer.

- **Compiling** (:meth:`GpuBench.compile`): one task per config, in a pool of spawned processes
  kept for the whole run (a worker imports torch and SGLang once, not once per wave). A task
  first asks the compile-only oracle whether the config fits the *target* GPU -- both GEMMs,
  SGLang's own launcher -- and only then launches it once per kernel specialization on the
  live GPU (:class:`~sglang_consumer_gpu.measure.moe.MoeJob`), which puts the kernels into
  Triton's on-disk cache for the timing process. When the target is the live GPU the oracle
  compiles for the same architecture and specialization as the launch, so Triton's cache
  serves the launch and the check costs no second compile; for another target
  (``--fit-for``, testing) it is one extra compile per config, at one batch size (shared
  memory does not depend on M), cached on disk by the oracle keyed by the Triton version.
- **Timing** (:meth:`time`, :meth:`compare`): both GEMMs of the layer through SGLang's own
  ``invoke_fused_moe_kernel`` (:class:`~sglang_consumer_gpu.measure.moe.MoeLayer`, Hopper-only
  paths off), with the engine's :class:`~sglang_consumer_gpu.measure.timer.Timer`: CUDA graphs,
  inputs rotated past the L2, clocks brought up first, finalists interleaved. Layers are kept
  per batch size while they fit in a third of the GPU memory that was free at the start.
- **Checking** (:meth:`check`): the layer as SGLang runs it against the float32 reference.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.compile import LATE, default_workers, spawn_pool
from sglang_consumer_gpu.measure.moe import MoeCase, MoeJob, parse_config_key
from sglang_consumer_gpu.measure.timer import Timer, Timing
from sglang_consumer_gpu.moe.shape import MoeShape

#: Batch size at which the oracle checks another GPU's fit (shared memory does not depend on M).
ORACLE_M = 64
FINALIST_ROUNDS = 5


@dataclass(frozen=True)
class CompileTask:
    """Compile one config: the oracle's fit check for ``target``, then one launch per batch size
    in ``Ms`` (one per specialization). ``oracle_at_each_M``: the target is the live GPU, so the
    oracle's compile is the launch's compile (done for every M)."""

    shape: MoeShape
    act_dtype: str
    config: tuple[tuple[str, int], ...]
    Ms: tuple[int, ...]
    target: GpuSpec
    oracle_at_each_M: bool
    deadline: float | None  # time.time()


def fit_problem(target: GpuSpec, shape: MoeShape, M: int, config: dict[str, int]) -> str:
    """ "" when the oracle says both GEMMs of ``config`` fit ``target``, else why not."""
    from sglang_consumer_gpu.oracle.kernels.moe import layer_shared

    try:
        shared = layer_shared(target, shape, M, config)
    except Exception as exc:
        return (
            f"does not compile for {target.arch_name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        )
    if shared > target.smem_per_block_optin:
        return (
            f"does not fit {target.name}: {shared} B of shared memory, limit {target.smem_per_block_optin} B"
        )
    return ""


def compile_config(task: CompileTask) -> str:
    """Run in a worker: "" when the config fits and compiled for every M, else why not."""
    if task.deadline is not None and time.time() > task.deadline:
        return LATE
    cfg = dict(task.config)
    for M in task.Ms if task.oracle_at_each_M else (ORACLE_M,):
        why = fit_problem(task.target, task.shape, M, cfg)
        if why:
            return why
    for M in task.Ms:
        try:
            MoeJob.of(MoeCase(task.shape, M, task.act_dtype), cfg).warm()
        except Exception as exc:
            return f"M={M}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return ""


def _worker_init() -> None:
    """Quiet stderr (Triton prints whole MLIR modules on a failed compile) and import the
    kernel modules before the first task."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    import sglang_consumer_gpu.measure.moe as engine

    engine.kernels()


def triton_cache_entries() -> int | None:
    """Kernels in Triton's on-disk cache (one directory each): before/after counts are the
    compiles a run really did."""
    try:
        from triton import knobs

        root = Path(knobs.cache.dir)
        return sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else 0
    except Exception:
        return None


class GpuBench:
    """:class:`~sglang_consumer_gpu.tune.search.Bench` on the live GPU (see the module docstring)."""

    def __init__(
        self,
        shape: MoeShape,
        act_dtype: str,
        target: GpuSpec,
        *,
        live_target: bool,
        workers: int | None = None,
        device: str = "cuda",
        timer: Timer | None = None,
    ) -> None:
        import torch

        self.shape, self.act_dtype, self.target, self.live_target = shape, act_dtype, target, live_target
        self.workers = workers or default_workers()
        self.device = device
        self.timer = timer or Timer(rounds=3)
        self.torch = torch
        self._pool: ProcessPoolExecutor | None = None
        self._layers: OrderedDict[int, Any] = OrderedDict()
        self._layer_budget = torch.cuda.mem_get_info()[0] // 3 if device == "cuda" else 1 << 30
        self._layer_bytes: dict[int, int] = {}
        self.compile_s = 0.0

    def _allocated(self) -> int:
        return self.torch.cuda.memory_allocated() if self.device == "cuda" else 0

    def now(self) -> float:
        return time.monotonic()

    # -- compiling
    def _prime(self) -> None:
        """Run SGLang's helpers this dtype needs (quantizer, aligner, activation) once here before
        the workers start: where SGLang's JIT kernels work they compile once into their disk
        cache, not in every worker at once. No GEMM runs."""
        from sglang_consumer_gpu.measure.moe import MoeLayer, silu_and_mul

        s = self.shape
        small = MoeShape(8, 128, 256, 2, s.dtype, s.block_shape, s.per_channel_quant)
        try:
            layer = MoeLayer(MoeCase(small, 4, self.act_dtype), device=self.device, slots=1)
            layer.alignment(0, 16)
            silu_and_mul(self.torch.randn(8, 256, device=self.device).to(layer.act))
        except Exception:  # the workers and the timing report whatever fails for real
            pass

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if self.device == "cuda":
                self._prime()
            self._pool = spawn_pool(self.workers, initializer=_worker_init)
        return self._pool

    def compile(
        self, jobs: dict[str, list[int]], deadline: float | None, done: Callable[[], None]
    ) -> dict[str, str]:
        t0 = time.monotonic()
        wall_deadline = None if deadline is None else time.time() + (deadline - time.monotonic())
        tasks = {
            key: CompileTask(self.shape, self.act_dtype, tuple(sorted(parse_config_key(key).items())), tuple(Ms),
                             self.target, self.live_target, wall_deadline)
            for key, Ms in jobs.items()
        }  # fmt: skip
        # costliest first, so that the wave does not end waiting on one big tile
        order = sorted(
            tasks, key=lambda k: -parse_config_key(k)["BLOCK_SIZE_M"] * parse_config_key(k)["BLOCK_SIZE_N"]
        )
        out: dict[str, str] = {}
        try:
            pending: dict[Future[str], str] = {
                self._executor().submit(compile_config, tasks[k]): k for k in order
            }
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    key = pending.pop(fut)
                    try:
                        out[key] = fut.result()
                    except BrokenProcessPool:
                        raise
                    except Exception as exc:  # the task itself raised (it reports what it can)
                        out[key] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    done()
        except BrokenProcessPool:  # a worker died (a compiler crash): the rest are not trusted
            self._pool = None
            for key in tasks:
                out.setdefault(key, "the compile process crashed")
        self.compile_s += time.monotonic() - t0
        return out

    # -- timing
    def layer(self, M: int) -> Any:
        from sglang_consumer_gpu.measure.moe import MoeLayer

        if M in self._layers:
            self._layers.move_to_end(M)
            return self._layers[M]
        before = self._allocated()
        # no L2 to rotate past off the GPU (the Triton interpreter): one input set
        layer = MoeLayer(MoeCase(self.shape, M, self.act_dtype), device=self.device,
                         slots=None if self.device == "cuda" else 1)  # fmt: skip
        self._layer_bytes[M] = max(1, self._allocated() - before)
        self._layers[M] = layer
        while len(self._layers) > 1 and sum(self._layer_bytes[m] for m in self._layers) > self._layer_budget:
            old, _ = self._layers.popitem(last=False)
            del self._layer_bytes[old]
            if self.device == "cuda":
                self.torch.cuda.empty_cache()
        return layer

    def _fn(self, M: int, key: str, down: str | None = None) -> tuple[Callable[[int], None], int]:
        layer = self.layer(M)
        return layer.gemms(parse_config_key(key), parse_config_key(down) if down else None), len(layer.slots)

    def time(self, M: int, key: str, skip_above_us: float | None) -> Timing:
        fn, slots = self._fn(M, key)
        return self.timer.time(fn, slots, skip_above_us=skip_above_us)

    def compare(self, M: int, candidates: dict[str, tuple[str, str | None]]) -> dict[str, float]:
        fns, slots = {}, 1
        for name, (key, down) in candidates.items():
            fns[name], slots = self._fn(M, key, down)
        return {n: t.us for n, t in self.timer.compare(fns, slots, rounds=FINALIST_ROUNDS).items()}

    def check(self, M: int, key: str, down: str | None) -> str:
        try:
            c = self.layer(M).check(parse_config_key(key), parse_config_key(down) if down else None)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        if c.ok:
            return ""
        return f"max row relative error {c.error:.2e} > bound {c.bound:.2e}, {c.unwritten} unwritten"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        self._layers.clear()
        if self.device == "cuda":
            self.torch.cuda.empty_cache()
