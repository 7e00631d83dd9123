"""Helpers for the device-side int8 scripts (tuning, correctness, benchmark).

* :func:`graph_time_us`: GPU time of one call, from a CUDA graph of many calls
  (SGLang runs decode under CUDA graphs, so launch overhead is not what a
  user sees), rotating through weight copies so that a small weight is not
  served from L2 on every call (a real forward pass reads each layer's weight
  once per step).
* :func:`precompile`: compile the kernel variants a run will use in parallel
  worker processes (Triton's on-disk cache then serves the main process), so
  a run spends its minutes timing rather than compiling.
* :func:`oracle_shared`: the compile-only oracle for many (tile, arch) pairs in
  parallel, to re-check feasibility under the device's own Triton version.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import statistics
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sglang_consumer_gpu.int8.tiles import Tile

#: Total bytes of weight copies one timing cycles through (> the 50 MB L2 of an H100).
L2_DEFEAT_BYTES = 128 * 1024 * 1024


def weight_copies(n: int, k: int, limit: int = 64) -> int:
    return max(1, min(limit, math.ceil(L2_DEFEAT_BYTES / (n * k))))


def graph_time_us(
    fn: Callable[[int], Any], *, copies: int = 1, budget_us: float = 3000.0, replays: int = 5
) -> float:
    """Median GPU microseconds per ``fn(i)`` call (``i`` selects the weight copy)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn(0)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(3):
            fn(i % copies)
        end.record()
    torch.cuda.synchronize()
    est_us = max(start.elapsed_time(end) * 1000.0 / 3, 1.0)
    iters = int(min(max(budget_us / est_us, 3, copies), 400))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for i in range(iters):
            fn(i % copies)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / iters)
    del graph
    return statistics.median(times)


# ---------------------------------------------------------------- precompile

#: (tile, out dtype name or "int32" for the raw accumulator, has_bias, even_k)
Variant = tuple[Tile, str, bool, bool]


def _compile_variant(variant: Variant) -> str:
    import torch

    from sglang_consumer_gpu.hardware.spec import GpuSpec
    from sglang_consumer_gpu.int8.ops import int8_mm_int32, int8_scaled_mm

    tile, dtype_name, has_bias, even_k = variant
    m, n = 32, 2 * tile.block_n
    k = 2 * tile.block_k if even_k else 2 * tile.block_k + 16
    dev = torch.device("cuda")
    a = torch.zeros((m, k), dtype=torch.int8, device=dev)
    b = torch.zeros((n, k), dtype=torch.int8, device=dev).t()
    spec = GpuSpec.for_arch(8, 9)
    try:
        if dtype_name == "int32":
            int8_mm_int32(a, b, tile=tile, spec=spec)
        else:
            dtype = getattr(torch, dtype_name)
            sa = torch.ones((m, 1), dtype=torch.float32, device=dev)
            sb = torch.ones((n,), dtype=torch.float32, device=dev)
            bias = torch.zeros((n,), dtype=dtype, device=dev) if has_bias else None
            int8_scaled_mm(a, b, sa, sb, dtype, bias, tile=tile, spec=spec)
        torch.cuda.synchronize()
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _pool(workers: int | None) -> ProcessPoolExecutor:
    workers = workers or max(1, min(14, (os.cpu_count() or 2) - 2))
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def precompile(variants: Iterable[Variant], workers: int | None = None) -> dict[Variant, str]:
    """Compile each variant once, in parallel; returns variant -> error ("" if fine)."""
    todo = sorted(set(variants), key=lambda v: (v[0], v[1], v[2], v[3]))
    if not todo:
        return {}
    with _pool(workers) as pool:
        return dict(zip(todo, pool.map(_compile_variant, todo), strict=True))


def variant_for(tile: Tile, dtype_name: str, has_bias: bool, k: int) -> Variant:
    return (tile, dtype_name, has_bias, k % tile.block_k == 0)


# ------------------------------------------------------------ oracle recheck


def _oracle_one(job: tuple[Tile, int]) -> dict[str, Any]:
    from sglang_consumer_gpu.hardware.spec import GpuSpec
    from sglang_consumer_gpu.oracle.kernels.int8 import tile_resources

    tile, arch = job
    spec = GpuSpec.for_arch(*divmod(arch, 10))
    try:
        r = tile_resources(spec, tile)
        return {
            "tile": tile.to_list(),
            "arch": spec.arch_name,
            "shared": r.shared,
            "limit": r.limit,
            "fits": r.fits,
        }
    except Exception as exc:
        return {"tile": tile.to_list(), "arch": spec.arch_name, "error": f"{type(exc).__name__}: {exc}"}


def oracle_shared(
    tiles: Iterable[Tile], archs: Iterable[int], workers: int | None = None
) -> list[dict[str, Any]]:
    """Compile-only shared memory of each tile for each arch (e.g. 89, 120)."""
    jobs = [(t, a) for t in tiles for a in archs]
    with _pool(workers) as pool:
        return list(pool.map(_oracle_one, jobs))


# ------------------------------------------------------------- run helpers


def environment() -> dict[str, str]:
    """Where a result was measured (goes at the top of every result JSON)."""
    import platform

    import torch
    import triton

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (Triton interpreter)"
    return {
        "device": device,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
    }


def errors_json(errors: dict[Variant, str]) -> dict[str, str]:
    return {json.dumps([v[0].to_list(), *v[1:]]): e for v, e in errors.items()}


def random_weights(n: int, k: int, copies: int, device: Any) -> tuple[list[Any], Any]:
    """``copies`` int8 weights [N, K] (symmetric range, as checkpoints store them) and scales [N]."""
    import torch

    weights = [torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device) for _ in range(copies)]
    return weights, torch.rand(n, device=device) + 0.5


def random_activations(m: int, k: int, device: Any) -> tuple[Any, Any]:
    """Per-token int8 activations [M, K] and their scales [M, 1]."""
    import torch

    return torch.randint(-128, 128, (m, k), dtype=torch.int8, device=device), torch.rand(
        m, 1, device=device
    ) + 0.5
