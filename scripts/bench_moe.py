"""Benchmark SGLang's own fused-MoE kernel: RTX-4090 default vs plugin heuristic vs sm_89-feasible best.

Three steps, so that the device machine (H100, Triton 3.6, no SGLang) only times:

1. ``plan`` (here, CPU, real SGLang 0.5.23 + Triton 3.8): for each shape/dtype,
   the search space = SGLang's tuning space (``tuning_fused_moe_triton.py``:
   BLOCK_M {16..256} x BLOCK_N {32..256} x BLOCK_K {64,128,256} x warps {4,8}
   x stages {2..5} x GROUP_M {1,16,32,64}) restricted to configs the
   compile-only oracle proves fit sm_89 (101376 B), pruned to keep it affordable:
   GROUP_SIZE_M is 1 in the sweep and refined afterwards ({16,32,64} for the
   three fastest configs of each point), 8 warps only for tiles of at least
   64x128, 4 warps only up to 128x128, and per tile only the two deepest
   pipelines (num_stages) that fit by the analytic bound. Per batch size also: SGLang's default
   config as SGLang picks it on a virtual RTX 4090, and the plugin's heuristic.
2. ``run`` (device): loads SGLang's ``fused_moe_triton_kernels.py`` from the
   0.5.23 wheel via ``scripts/device/sglang_env.py`` and calls SGLang's own
   ``invoke_fused_moe_kernel`` for both GEMMs of the layer (up: ``w1``,
   ``[E, 2N, K]``; down: ``w2``, ``[E, K, N]`` with router weights), one
   config for both, timed as a CUDA graph. It behaves as on sm_89: swap_ab and
   PDL (sm_90-only paths SGLang enables on an H100) are turned off; fp8
   activations are quantized once outside the timed region (SGLang's JIT
   quantizer does not run there), which leaves the kernel launch untouched.
   Correctness of default, heuristic and best configs against a float32 torch
   reference. Writes ``moe_bench.json`` and ``moe_bench.png`` to ``--out``.
3. ``report`` (anywhere): the ratio table (markdown) from the JSON.

Commands::

    python scripts/bench_moe.py plan --out results/moe_bench_plan.json
    python scripts/bench_moe.py run --plan results/moe_bench_plan.json --out $OUT      # on the device
    python scripts/bench_moe.py report results/moe_bench.json

Held-out shapes (``--shapes NAME[,NAME]`` from :data:`SHAPES`, or ``heldout``; default: the
three shapes the heuristic was calibrated on)::

    python scripts/bench_moe.py plan --shapes heldout --prove-per-shape --out results/moe_bench_heldout_plan.json
    python scripts/bench_moe.py run --plan results/moe_bench_heldout_plan.json --out $OUT \
        --stem moe_bench_heldout --small-m-full --warm-budget-s 220 --budget-s 370   # on the device
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DTYPES = (None, "fp8_w8a8")
#: Every shape the benchmark knows: E experts, N = per-GPU intermediate size (the ``N=`` of
#: SGLang's config file names), K = hidden size, top-k; ``dtypes`` (None = bf16) to time.
#: The first three calibrated the heuristic (in-sample); the rest are held out from it.
#: Held-out values are from the models' config.json: Qwen3-235B-A22B hidden_size 4096,
#: moe_intermediate_size 1536, num_experts 128, num_experts_per_tok 8 (TP4: 1536/4);
#: GLM-4.5-Air hidden_size 4096, moe_intermediate_size 1408, n_routed_experts 128,
#: num_experts_per_tok 8 (TP2: 1408/2); gpt-oss-20b hidden_size 2880, intermediate_size
#: 2880, num_local_experts 32, num_experts_per_tok 4 (bf16 weights, expert biases omitted).
SHAPES = {
    "Qwen3-30B-A3B": {"E": 128, "N": 768, "K": 2048, "topk": 8, "dtypes": DTYPES},
    "DeepSeek-V2-Lite": {"E": 64, "N": 1408, "K": 2048, "topk": 6, "dtypes": DTYPES},
    "Mixtral-8x7B-TP2": {"E": 8, "N": 7168, "K": 4096, "topk": 2, "dtypes": DTYPES},
    "Qwen3-235B-A22B-TP4": {"E": 128, "N": 384, "K": 4096, "topk": 8, "dtypes": DTYPES},
    "GLM-4.5-Air-TP2": {"E": 128, "N": 704, "K": 4096, "topk": 8, "dtypes": DTYPES},
    "gpt-oss-20b": {"E": 32, "N": 2880, "K": 2880, "topk": 4, "dtypes": (None,)},
    "Qwen3-Next-80B-A3B": {"E": 512, "N": 512, "K": 2048, "topk": 10, "dtypes": DTYPES},
    "Mixtral-8x22B-TP4": {"E": 8, "N": 4096, "K": 6144, "topk": 2, "dtypes": DTYPES},
    "Qwen1.5-MoE-A2.7B": {"E": 60, "N": 1408, "K": 2048, "topk": 4, "dtypes": DTYPES},
}
DEFAULT_SHAPES = ("Qwen3-30B-A3B", "DeepSeek-V2-Lite", "Mixtral-8x7B-TP2")
HELDOUT_SHAPES = ("Qwen3-235B-A22B-TP4", "GLM-4.5-Air-TP2", "gpt-oss-20b")
#: Fresh held-out shapes for heuristic v2 (never used to fit it). config.json values:
#: Qwen3-Next-80B-A3B hidden_size 2048, moe_intermediate_size 512, num_experts 512,
#: num_experts_per_tok 10; Mixtral-8x22B hidden_size 6144, intermediate_size 16384,
#: num_local_experts 8, num_experts_per_tok 2 (TP4: 16384/4); Qwen1.5-MoE-A2.7B hidden_size
#: 2048, moe_intermediate_size 1408, num_experts 60, num_experts_per_tok 4 (routed experts only).
FRESH_SHAPES = ("Qwen3-Next-80B-A3B", "Mixtral-8x22B-TP4", "Qwen1.5-MoE-A2.7B")


def select_shapes(names: str | None) -> list[dict[str, Any]]:
    """``NAME[,NAME]`` from :data:`SHAPES` (``heldout`` = the held-out three); None = the default three."""
    wanted: list[str] = []
    for name in (names or ",".join(DEFAULT_SHAPES)).split(","):
        name = name.strip()
        if name == "heldout":
            wanted += HELDOUT_SHAPES
        elif name == "fresh":
            wanted += FRESH_SHAPES
        elif name == "calibration":
            wanted += DEFAULT_SHAPES
        elif name in SHAPES:
            wanted.append(name)
        elif name:
            raise SystemExit(
                f"unknown shape {name!r}; choose from: {', '.join(SHAPES)}, calibration, heldout, fresh"
            )
    return [
        {"name": n, **{k: v for k, v in SHAPES[n].items() if k != "dtypes"}} for n in dict.fromkeys(wanted)
    ]


CASES = tuple(select_shapes(None))
GRID = (1, 4, 16, 64, 256, 1024, 4096)
KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def cfg_key(cfg: dict[str, Any]) -> str:
    """Stable short name: BMxBNxBK-gG-wW-sS (Triton defaults filled in)."""
    c = {"num_warps": 4, "num_stages": 3, **cfg}
    return "{BLOCK_SIZE_M}x{BLOCK_SIZE_N}x{BLOCK_SIZE_K}-g{GROUP_SIZE_M}-w{num_warps}-s{num_stages}".format(
        **c
    )


# ----------------------------------------------------------------------------- plan (CPU)


def search_space() -> list[dict[str, int]]:
    out = []
    for bm, bn, bk, w, s in itertools.product(
        (16, 32, 64, 128, 256), (32, 64, 128, 256), (64, 128, 256), (4, 8), (2, 3, 4, 5)
    ):
        if (w == 8 and bm * bn < 64 * 128) or (w == 4 and bm * bn > 128 * 128):
            continue
        out.append(
            {
                "BLOCK_SIZE_M": bm,
                "BLOCK_SIZE_N": bn,
                "BLOCK_SIZE_K": bk,
                "GROUP_SIZE_M": 1,
                "num_warps": w,
                "num_stages": s,
            }
        )
    return out


def sglang_default(spec: Any, M: int, case: dict[str, Any], dtype: str | None) -> dict[str, Any]:
    """SGLang 0.5.23's ``get_default_config`` as it answers on ``spec`` (virtual GPU)."""
    import sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config as cfgmod

    from sglang_consumer_gpu.patches import registry

    registry.revert_all()  # SGLang's own function, not the plugin's
    original = getattr(cfgmod.get_default_config, registry.MARKER, (None, cfgmod.get_default_config))[1]
    try:
        from sglang_consumer_gpu.oracle.virtual import virtual_gpu
    except ImportError:  # before the oracle's virtual GPU existed: answer SGLang's one device query
        virtual_gpu = None
    cfgmod._get_cuda_shared_memory_per_block_optin.cache_clear()
    if virtual_gpu is not None:
        with virtual_gpu(spec):
            cfgmod._get_cuda_shared_memory_per_block_optin.cache_clear()
            cfg = original(M, case["E"], case["N"], case["K"], case["topk"], dtype, False, None)
    else:
        saved = cfgmod._get_cuda_shared_memory_per_block_optin
        cfgmod._get_cuda_shared_memory_per_block_optin = lambda: spec.smem_per_block_optin
        try:
            cfg = original(M, case["E"], case["N"], case["K"], case["topk"], dtype, False, None)
        finally:
            cfgmod._get_cuda_shared_memory_per_block_optin = saved
    cfgmod._get_cuda_shared_memory_per_block_optin.cache_clear()
    return dict(cfg)


def _publish_exec() -> None:
    """``get_default_config`` reads SGLang's runtime context; publish a default one."""
    try:
        from sglang.srt import runtime_context

        runtime_context.get_exec()
    except Exception:
        from sglang_consumer_gpu.oracle import virtual

        publish = getattr(virtual, "publish_default_exec", None)
        if publish is not None:
            publish()


def plan(out: Path, jobs: int, shapes: str | None = None, prove_per_shape: bool = False) -> None:
    """Write the plan for ``shapes`` (see :func:`select_shapes`).

    By default each (dtype, config) is proven once, on the Qwen3-30B-A3B shape;
    ``prove_per_shape`` proves it on every timed shape instead (the kernel's
    ``even_Ks`` and ``top_k`` constexprs follow the shape, so this is the stricter proof)."""
    from concurrent.futures import ProcessPoolExecutor

    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.heuristic import heuristic_config
    from sglang_consumer_gpu.moe.shape import MoeShape
    from sglang_consumer_gpu.moe.smem import estimate_shared
    from sglang_consumer_gpu.versions import installed_version

    spec = find_gpu("NVIDIA GeForce RTX 4090")
    _publish_exec()
    space = search_space()
    doc: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gpu": spec.to_dict(),
        "triton_plan": installed_version("triton"),
        "sglang": installed_version("sglang"),
        "grid": list(GRID),
        "space_rule": __doc__.split("1. ``plan``")[1].split("2. ``run``")[0].strip(),
        "cases": [],
    }
    # Shared memory depends on the tile, dtype and pipeline, not on E/N/K/top_k (the
    # GEMM sizes are runtime arguments), so each (dtype, config) is proven once, on
    # the Qwen3-30B-A3B shape, for both GEMMs of the layer.
    cases = select_shapes(shapes)
    doc["prove_per_shape"] = prove_per_shape
    proven: dict[Any, list[dict[str, Any]]] = {}
    cand_n: dict[Any, int] = {}
    for case in cases:
        for dtype in SHAPES[case["name"]]["dtypes"]:
            key = (case["name"], dtype) if prove_per_shape else dtype
            if key in proven:
                continue
            dims = (case["E"], case["N"], case["K"], case["topk"]) if prove_per_shape else (128, 768, 2048, 8)
            shape = MoeShape(*dims, dtype)
            cand = _two_deepest([c for c in space if estimate_shared(c, dtype) <= spec.smem_per_block_optin])
            with ProcessPoolExecutor(jobs) as pool:
                shared = list(pool.map(_oracle_worker, [(shape, c) for c in cand], chunksize=8))
            proven[key] = [
                {**c, "shared_sm89": sh, "estimate": estimate_shared(c, dtype)}
                for c, sh in zip(cand, shared, strict=True)
                if sh is not None and sh <= spec.smem_per_block_optin
            ]
            cand_n[key] = len(cand)
            print(
                f"{shape.label if prove_per_shape else dtype or 'bf16'}: {len(proven[key])} of "
                f"{len(cand)} candidates proven to fit sm_89",
                flush=True,
            )
    for case in cases:
        for dtype in SHAPES[case["name"]]["dtypes"]:
            shape = MoeShape(case["E"], case["N"], case["K"], case["topk"], dtype)
            key = (case["name"], dtype) if prove_per_shape else dtype
            feasible = proven[key]
            points = []
            for M in GRID:
                d = sglang_default(spec, M, case, dtype)
                h = heuristic_config(M, shape, spec)
                points.append({"M": M, "default": d, "heuristic": h})
            doc["cases"].append(
                {**case, "dtype": dtype, "space": feasible, "candidates": cand_n[key], "points": points}
            )
            print(
                f"{case['name']} {dtype or 'bf16'}: {len(feasible)} of {cand_n[key]} candidates fit sm_89",
                flush=True,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")


def merge_plans(out: Path, plans: list[Path], order: str | None = None) -> None:
    """One plan from several (cases in the given order), heuristic configs refreshed to the code's.

    Each case keeps its own proven space, candidate count and SGLang default (as its plan
    recorded them); only the plugin's heuristic is recomputed, since the point is to time the
    heuristic as the code now chooses it."""
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.heuristic import heuristic_config
    from sglang_consumer_gpu.moe.shape import MoeShape

    spec = find_gpu("NVIDIA GeForce RTX 4090")
    docs = [json.loads(p.read_text()) for p in plans]
    merged = {k: v for k, v in docs[0].items() if k != "cases"}
    merged.update(created=time.strftime("%Y-%m-%d %H:%M:%S"), merged_from=[p.name for p in plans], cases=[])
    for p, d in zip(plans, docs, strict=True):
        for c in d["cases"]:
            shape = MoeShape(c["E"], c["N"], c["K"], c["topk"], c["dtype"])
            for pt in c["points"]:
                pt["heuristic"] = heuristic_config(pt["M"], shape, spec)
            merged["cases"].append(
                {**c, "plan_file": p.name, "prove_per_shape": d.get("prove_per_shape", False)}
            )
    if order:  # (name, dtype) pairs first in this order, e.g. "Qwen3-235B-A22B-TP4|fp8_w8a8"
        rank = {k: i for i, k in enumerate(order.split(","))}
        merged["cases"].sort(key=lambda c: rank.get(f"{c['name']}|{c['dtype'] or 'bf16'}", len(rank)))
    out.write_text(json.dumps(merged, indent=1))
    print(f"wrote {out}: {len(merged['cases'])} cases")


def _two_deepest(cands: list[dict[str, int]]) -> list[dict[str, int]]:
    """Per (BM, BN, BK, warps), the two largest num_stages among ``cands``."""
    by_tile: dict[tuple[int, ...], list[dict[str, int]]] = {}
    for c in cands:
        by_tile.setdefault(tuple(c[k] for k in (*KEYS[:3], "num_warps")), []).append(c)
    out = []
    for group in by_tile.values():
        out.extend(sorted(group, key=lambda c: -c["num_stages"])[:2])
    return out


def _oracle_worker(item: tuple[Any, dict[str, int]]) -> int | None:
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.oracle.kernels.moe import layer_shared as oracle_shared

    shape, cfg = item
    try:
        # M=64: shared memory does not depend on M; both GEMMs are compiled.
        return oracle_shared(find_gpu("NVIDIA GeForce RTX 4090"), shape, 64, cfg)
    except Exception as exc:
        print(f"oracle failed for {cfg}: {exc}", file=sys.stderr)
        return None


# ----------------------------------------------------------------------------- run (device)


def _import_sglang_kernels() -> Any:
    """SGLang's fused-MoE kernel module: installed SGLang here, the carry on the device."""
    import importlib
    import importlib.metadata

    sys.path.insert(0, str(REPO / "scripts" / "device"))
    try:
        importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        # The device machine: SGLang's own files from the carry (spawned workers
        # inherit the carry on sys.path, so test for an installed SGLang, not a module).
        importlib.import_module("sglang_env")
    return importlib.import_module("sglang.kernels.ops.moe.fused_moe_triton_kernels")


class Bench:
    """Everything that touches the GPU; SGLang's kernel module is ``self.fmk``."""

    def __init__(self) -> None:
        import torch

        fmk = _import_sglang_kernels()

        self.torch = torch
        self.fmk = fmk
        # Behave as on sm_89: these two sm_90-only paths are off on an RTX 4090.
        fmk.should_enable_swap_ab = lambda *a, **k: False
        fmk.is_arch_support_pdl = lambda *a, **k: False

        def prequantized(A: Any, A_scale: Any = None, **_: Any) -> Any:
            assert A.dtype == torch.float8_e4m3fn and A_scale is not None, "bench quantizes A up front"
            return A, A_scale

        fmk.scaled_fp8_quant = prequantized
        torch.backends.cuda.matmul.allow_tf32 = False

    # -- data
    def make_case(
        self, case: dict[str, Any], dtype: str | None, seed: int = 0, experts: int | None = None
    ) -> dict[str, Any]:
        """Weights for ``case``; ``experts=1`` for compile warm-up (same strides, less memory)."""
        t = self.torch
        g = t.Generator(device="cuda").manual_seed(seed)
        E, N, K = experts or case["E"], case["N"], case["K"]
        w1 = t.randn(E, 2 * N, K, device="cuda", dtype=t.bfloat16, generator=g) / math.sqrt(K)
        w2 = t.randn(E, K, N, device="cuda", dtype=t.bfloat16, generator=g) / math.sqrt(N)
        d: dict[str, Any] = {"case": case, "dtype": dtype}
        if dtype == "fp8_w8a8":
            for name, w in (("w1", w1), ("w2", w2)):
                scale = w.abs().amax(dim=(1, 2)).float() / 448.0
                d[name] = (w / scale[:, None, None]).to(t.float8_e4m3fn)
                d[name + "_scale"] = scale
            del w1, w2
        else:
            d["w1"], d["w2"] = w1, w2
            d["w1_scale"] = d["w2_scale"] = None
        return d

    def make_inputs(self, d: dict[str, Any], M: int, seed: int) -> dict[str, Any]:
        t = self.torch
        case = d["case"]
        g = t.Generator(device="cuda").manual_seed(seed)
        x = t.randn(M, case["K"], device="cuda", dtype=t.bfloat16, generator=g)
        logits = t.randn(M, case["E"], device="cuda", generator=g)
        weights, ids = t.topk(t.softmax(logits, dim=-1), case["topk"], dim=-1)
        if d["w1"].shape[0] == 1:  # warm-up weights: every token to expert 0 (buffer sizes as for E)
            ids = t.zeros_like(ids)
        inter = t.randn(M * case["topk"], case["N"], device="cuda", dtype=t.bfloat16, generator=g)
        inp = {"M": M, "topk_ids": ids.to(t.int32), "topk_weights": weights.float().contiguous()}
        if d["dtype"] == "fp8_w8a8":
            for name, a in (("x", x), ("inter", inter)):
                s = (a.abs().amax().float() / 448.0).reshape(1)
                inp[name] = (a / s).to(t.float8_e4m3fn)
                inp[name + "_scale"] = s
        else:
            inp["x"], inp["inter"] = x, inter
            inp["x_scale"] = inp["inter_scale"] = None
        inp["c1"] = t.empty(M, case["topk"], 2 * case["N"], device="cuda", dtype=t.bfloat16)
        inp["c2"] = t.empty(M, case["topk"], case["K"], device="cuda", dtype=t.bfloat16)
        return inp

    def align(self, topk_ids: Any, bm: int, E: int) -> tuple[Any, Any, Any]:
        """Same layout as SGLang's ``moe_align_block_size`` (buffer sizes included)."""
        t = self.torch
        flat = topk_ids.flatten().long()
        numel = flat.numel()
        padded_max = numel * bm if numel < E + 1 else numel + (E + 1) * (bm - 1)
        padded_max = (padded_max + 3) // 4 * 4
        counts = t.bincount(flat, minlength=E)
        padded = (counts + bm - 1) // bm * bm
        starts = t.cumsum(padded, 0) - padded
        order = t.argsort(flat, stable=True)
        sorted_e = flat[order]
        rank = t.arange(numel, device=flat.device) - (t.cumsum(counts, 0) - counts)[sorted_e]
        sorted_ids = t.full((padded_max,), numel, dtype=t.int32, device=flat.device)
        sorted_ids[starts[sorted_e] + rank] = order.to(t.int32)
        nblocks = -(-padded_max // bm)
        expert_ids = t.zeros(nblocks, dtype=t.int32, device=flat.device)
        block_e = t.repeat_interleave(t.arange(E, device=flat.device), padded // bm)
        expert_ids[: block_e.numel()] = block_e.to(t.int32)
        total = t.tensor([int(padded.sum())], dtype=t.int32, device=flat.device)
        return sorted_ids, expert_ids, total

    # -- the two GEMMs, exactly as fused_experts_impl calls them
    def runner(self, d: dict[str, Any], inp: dict[str, Any], cfg: dict[str, Any]) -> Any:
        t, fmk = self.torch, self.fmk
        cfg = {k: v for k, v in cfg.items() if k in KEYS}
        fp8 = d["dtype"] == "fp8_w8a8"
        bm = cfg["BLOCK_SIZE_M"]
        cache = inp.setdefault("_align", {})
        if bm not in cache:
            cache[bm] = self.align(inp["topk_ids"], bm, d["case"]["E"])
        sorted_ids, expert_ids, total = cache[bm]
        topk = d["case"]["topk"]

        def go() -> None:
            for A, A_s, B, B_s, C, mul, k in (
                (inp["x"], inp["x_scale"], d["w1"], d["w1_scale"], inp["c1"], False, topk),
                (inp["inter"], inp["inter_scale"], d["w2"], d["w2_scale"], inp["c2"], True, 1),
            ):
                fmk.invoke_fused_moe_kernel(
                    A, B, None, C, A_s, B_s, None, inp["topk_weights"], inp["topk_ids"],
                    sorted_ids, expert_ids, total, mul, k, cfg,
                    compute_type=fmk.tl.bfloat16, use_fp8_w8a8=fp8, use_int8_w8a8=False,
                    use_int8_w8a16=False, use_int4_w4a16=False, per_channel_quant=False, block_shape=None,
                )  # fmt: skip

        del t
        return go

    def time_cfg(self, go: Any, target_ms: float = 2.0, skip_above_us: float | None = None) -> float:
        """Microseconds per call of ``go`` (both GEMMs), median of graph replays.

        An eager call (launch gaps included) is an upper bound on the graph time:
        when it is already above ``skip_above_us`` the config cannot win, and the
        eager time is returned without graph timing (marked negative)."""
        t = self.torch
        go()
        t.cuda.synchronize()
        s, e = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        s.record()
        go()
        e.record()
        e.synchronize()
        est = max(s.elapsed_time(e), 1e-3)
        if skip_above_us is not None and est * 1000 > skip_above_us:
            return -est * 1000
        reps = int(min(max(target_ms / est, 1), 25))
        times = []
        try:
            graph = t.cuda.CUDAGraph()
            with t.cuda.graph(graph):
                for _ in range(reps):
                    go()
            graph.replay()
            t.cuda.synchronize()
            for _ in range(3):
                s.record()
                graph.replay()
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e) * 1000 / reps)
            del graph
        except RuntimeError:  # capture refused: eager timing (launch gaps included)
            t.cuda.synchronize()
            for _ in range(3):
                s.record()
                for _ in range(reps):
                    go()
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e) * 1000 / reps)
        return statistics.median(times)

    def check(self, d: dict[str, Any], inp: dict[str, Any], go: Any) -> float:
        """Max relative error (Frobenius) of both GEMM outputs vs a float32 torch reference."""
        t = self.torch
        inp["c1"].fill_(float("nan"))
        inp["c2"].fill_(float("nan"))
        go()
        t.cuda.synchronize()
        fp8 = d["dtype"] == "fp8_w8a8"

        def deq(a: Any, s: Any) -> Any:
            return a.float() * s if fp8 else a.float()

        x = deq(inp["x"], inp["x_scale"])
        inter = deq(inp["inter"], inp["inter_scale"])
        ids = inp["topk_ids"].long()
        M, topk = ids.shape
        ref1 = t.empty(M, topk, d["w1"].shape[1], device="cuda")
        ref2 = t.empty(M, topk, d["w2"].shape[1], device="cuda")
        for e in ids.unique().tolist():
            m, j = (ids == e).nonzero(as_tuple=True)
            w1 = deq(d["w1"][e], d["w1_scale"][e] if fp8 else None)
            w2 = deq(d["w2"][e], d["w2_scale"][e] if fp8 else None)
            ref1[m, j] = x[m] @ w1.T
            ref2[m, j] = (inter[m * topk + j] @ w2.T) * inp["topk_weights"][m, j, None]
        errs = []
        for out, ref in ((inp["c1"], ref1), (inp["c2"], ref2)):
            o = out.float()
            if not bool(t.isfinite(o).all()):
                return float("inf")
            errs.append(float((o - ref).norm() / ref.norm()))
        return max(errs)


def _warm_worker(
    args: tuple[str, list[tuple[int, int, dict[str, Any]]], float | None],
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Compile (by running once) a share of the configs, filling Triton's disk cache.
    Returns the (case, config) pairs Triton could not compile here, and those not
    reached before ``deadline`` (time.time())."""
    plan_path, jobs, deadline = args
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # Triton's C++ pass manager dumps whole MLIR modules on a failed compile
    b = Bench()
    doc = json.loads(Path(plan_path).read_text())
    failed: list[tuple[int, str]] = []
    late: list[tuple[int, str]] = []
    cache: dict[int, Any] = {}  # warm-up weights (one expert) of every case this worker meets
    for ci, M, cfg in jobs:
        c = doc["cases"][ci]
        if (ci, cfg_key(cfg)) in failed:
            continue
        if deadline is not None and time.time() > deadline:
            late.append((ci, cfg_key(cfg)))
            continue
        if ci not in cache:
            cache[ci] = b.make_case(c, c["dtype"], experts=1)
        d = cache[ci]
        inp = b.make_inputs(d, M, seed=1)
        try:
            b.runner(d, inp, cfg)()
        except Exception as exc:
            failed.append((ci, cfg_key(cfg)))
            print(
                f"compile failed on this Triton: {c['name']} {cfg_key(cfg)}: {type(exc).__name__}", flush=True
            )
        del inp
    b.torch.cuda.synchronize()
    return failed, late


def _parallel_warm(
    plan_path: Path,
    jobs: list[tuple[int, int, dict[str, Any]]],
    workers: int,
    deadline: float | None = None,
    first: set[tuple[int, str]] | None = None,
) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
    """Warm the Triton cache in ``workers`` processes: (failed, not reached by ``deadline``).

    All batch sizes and cases of one config go to the same worker, one after the
    other, so a kernel variant two jobs share is compiled once (Triton's cache)
    instead of concurrently by several workers. ``first``: (case, config) pairs
    each worker compiles before the rest (default and heuristic)."""
    import multiprocessing as mp

    if not jobs:
        return set(), set()
    chunks = _warm_chunks(jobs, workers, first or set())
    ctx = mp.get_context("spawn")
    failed: set[tuple[int, str]] = set()
    late: set[tuple[int, str]] = set()
    with ctx.Pool(len(chunks)) as pool:
        for f, lt in pool.imap_unordered(_warm_worker, [(str(plan_path), c, deadline) for c in chunks]):
            failed.update(tuple(x) for x in f)
            late.update(tuple(x) for x in lt)
    return failed, late


def _warm_chunks(
    jobs: list[tuple[int, int, dict[str, Any]]], workers: int, first: set[tuple[int, str]]
) -> list[list[tuple[int, int, dict[str, Any]]]]:
    """One list of jobs per worker; every job of one config in the same list."""
    groups: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    for j in jobs:
        groups.setdefault(cfg_key(j[2]), []).append(j)
    # biggest tiles (slowest compiles) first, dealt in snake order for balance
    order = sorted(groups, key=lambda k: (-math.prod(_parse_key(k)[x] for x in KEYS[:3]), k))
    chunks: list[list[tuple[int, int, dict[str, Any]]]] = [[] for _ in range(workers)]
    for i, k in enumerate(order):
        r = i % (2 * workers)
        chunks[r if r < workers else 2 * workers - 1 - r].extend(
            sorted(groups[k], key=lambda j: (j[0], j[1]))
        )
    return [sorted(c, key=lambda j: (j[0], cfg_key(j[2])) not in first) for c in chunks if c]


def run(
    plan_path: Path,
    out: Path,
    workers: int,
    budget_s: float,
    only: str | None,
    stem: str = "moe_bench",
    small_m_full: bool = False,
    warm_budget_s: float | None = None,
) -> None:
    """Exhaustive run over the plan's pruned space (see the module docstring).

    ``small_m_full``: at M <= 64 time every BLOCK_SIZE_M <= 32 config as a CUDA
    graph, without the early exit (an eager launch above twice the best so far),
    which at small M skips configs for launch overhead (what ``confirm`` re-timed).
    ``warm_budget_s``: space configs not compiled by then are left out (recorded);
    default and heuristic are compiled first and always timed."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(plan_path.read_text())
    b = Bench()
    import torch
    import triton

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "triton_device": triton.__version__,
        "torch_device": torch.__version__,
        "plan": {k: doc[k] for k in ("created", "triton_plan", "sglang", "grid", "space_rule")},
        "plan_file": plan_path.name,
        "prove_per_shape": doc.get("prove_per_shape", False),
        "small_m_full": small_m_full,
        "cases": [],
    }
    case_ids = [i for i, c in enumerate(doc["cases"]) if _selected(c["name"], only, c["dtype"])]
    # 1. compile everything in parallel (Triton's disk cache), then time serially.
    jobs = []
    for ci in case_ids:
        c = doc["cases"][ci]
        for p in c["points"]:
            for cfg in [p["default"], p["heuristic"], *c["space"]]:
                jobs.append((ci, p["M"], {k: v for k, v in cfg.items() if k in KEYS}))
    seen = set()
    uniq = []
    for j in jobs:
        k = (j[0], j[1], cfg_key(j[2]))
        if k not in seen:
            seen.add(k)
            uniq.append(j)
    named = {
        (ci, cfg_key(p[n]))
        for ci in case_ids
        for p in doc["cases"][ci]["points"]
        for n in ("default", "heuristic")
    }
    deadline = t0 + warm_budget_s if warm_budget_s else None
    failed, late = _parallel_warm(plan_path, uniq, workers, deadline, named)
    results["compile_failed_on_device"] = sorted(f"{doc['cases'][ci]['name']}|{k}" for ci, k in failed)
    results["not_warmed_in_time"] = sorted(
        f"{doc['cases'][ci]['name']}|{doc['cases'][ci]['dtype']}|{k}" for ci, k in late
    )
    results["warm_s"] = time.time() - t0
    print(
        f"warm-up: {len(uniq)} launches in {time.time() - t0:.0f} s; {len(failed)} failed to compile; "
        f"{len(late)} (case, config) not reached in time",
        flush=True,
    )
    failed |= late
    _burn_in(b)
    refine: list[tuple[int, int, dict[str, Any]]] = []
    pending: list[dict[str, Any]] = []
    for ci in case_ids:
        c = doc["cases"][ci]
        d = b.make_case(c, c["dtype"])
        cres = {k: c[k] for k in ("name", "E", "N", "K", "topk", "dtype")}
        cres["space_size"] = len(c["space"])
        cres["points"] = []
        for p in c["points"]:
            if time.time() - t0 > budget_s:
                print("time budget reached; stopping", flush=True)
                break
            M = p["M"]
            inp = b.make_inputs(d, M, seed=M)
            timings: dict[str, float] = {}
            skipped: dict[str, float] = {}
            best_us = math.inf
            for cfg in c["space"]:
                cfg = {k: v for k, v in cfg.items() if k in KEYS}
                if (ci, cfg_key(cfg)) in failed:
                    continue
                full = small_m_full and M <= 64 and cfg["BLOCK_SIZE_M"] <= 32
                try:
                    us = b.time_cfg(b.runner(d, inp, cfg), skip_above_us=None if full else 2.0 * best_us)
                except Exception as exc:
                    print(f"{c['name']} M={M} {cfg_key(cfg)} failed: {exc}"[:300], flush=True)
                    continue
                if us < 0:
                    skipped[cfg_key(cfg)] = -us
                else:
                    timings[cfg_key(cfg)] = us
                    best_us = min(best_us, us)
            named = {}
            for name in ("default", "heuristic"):
                cfg = p[name]
                try:
                    go = b.runner(d, inp, cfg)
                    named[name] = {"config": cfg, "us": b.time_cfg(go), "rel_err": b.check(d, inp, go)}
                except Exception as exc:
                    print(f"{name} {cfg} failed: {type(exc).__name__}: {exc}"[:300], flush=True)
                    named[name] = {"config": cfg, "us": math.inf, "rel_err": None, "error": str(exc)[:300]}
            top = sorted(timings, key=timings.get)[:3]
            pr = {"M": M, "space_us": timings, "skipped_eager_us": skipped, "top3": top, **named}
            cres["points"].append(pr)
            for k in top:
                base = next(x for x in c["space"] if cfg_key({kk: x[kk] for kk in KEYS}) == k)
                for g in (16, 32, 64):
                    refine.append((ci, M, {**{kk: base[kk] for kk in KEYS}, "GROUP_SIZE_M": g}))
            print(
                f"{c['name']:>17} {c['dtype'] or 'bf16':>8} M={M:>5}: best {timings[top[0]]:.1f} us "
                f"heur {named['heuristic']['us']:.1f} default {named['default']['us']:.1f} "
                f"({time.time() - t0:.0f} s)",
                flush=True,
            )
            del inp
        pending.append({"ci": ci, "res": cres})
        results["cases"].append(cres)
        del d
        torch.cuda.empty_cache()
        _dump(results, out, stem)
    # 2. GROUP_SIZE_M refinement of the three fastest configs per point.
    if time.time() - t0 < budget_s:
        f, lt = _parallel_warm(plan_path, refine, workers, t0 + budget_s)
        failed |= f | lt
        refine = [r for r in refine if (r[0], cfg_key(r[2])) not in failed]
        for item in pending:
            ci, cres = item["ci"], item["res"]
            c = doc["cases"][ci]
            d = b.make_case(c, c["dtype"])
            for pr in cres["points"]:
                if time.time() - t0 > budget_s:
                    break
                inp = b.make_inputs(d, pr["M"], seed=pr["M"])
                for rci, rM, cfg in refine:
                    if rci == ci and rM == pr["M"]:
                        pr["space_us"][cfg_key(cfg)] = b.time_cfg(b.runner(d, inp, cfg))
                best = min(pr["space_us"], key=pr["space_us"].get)
                cfg = _parse_key(best)
                go = b.runner(d, inp, cfg)
                pr["best"] = {"config": cfg, "us": pr["space_us"][best], "rel_err": b.check(d, inp, go)}
            del d
            torch.cuda.empty_cache()
    for cres in results["cases"]:
        for pr in cres["points"]:
            if "best" not in pr and pr["space_us"]:
                best = min(pr["space_us"], key=pr["space_us"].get)
                pr["best"] = {"config": _parse_key(best), "us": pr["space_us"][best], "rel_err": None}
    results["oracle_triton_device"] = _oracle_check_device(results, workers)
    results["wall_s"] = time.time() - t0
    _dump(results, out, stem)
    print(report_table(results))
    try:
        plot(results, out / f"{stem}.png")
    except Exception as exc:
        print(f"plot failed: {exc}")


def _burn_in(b: Bench, seconds: float = 2.0) -> None:
    """Bring the GPU to its working clock before timing (it idles at a few hundred MHz)."""
    t = b.torch
    a = t.randn(8192, 8192, device="cuda", dtype=t.bfloat16)
    end = time.time() + seconds
    while time.time() < end:
        a @ a
        t.cuda.synchronize()


def confirm(
    plan_path: Path,
    previous: list[Path],
    out: Path,
    workers: int,
    stem: str = "moe_bench_confirm",
    only: str | None = None,
    budget_s: float | None = None,
    warm_budget_s: float | None = None,
) -> None:
    """Second run: the current heuristic against the fastest configs of earlier runs.

    Per point it times, in one run: SGLang's RTX-4090 default, the heuristic as
    the code now chooses it, the best and five fastest configs of every
    ``previous`` run that timed the case, and (for M <= 64, where the first
    run's early-exit skipped configs whose eager launch was slow) every space
    config with BLOCK_SIZE_M <= 32. "best" is the fastest sm_89-feasible config
    timed in this run. Cases no previous run timed are skipped (use ``run``).
    ``only``: comma-separated case-name substrings; ``warm_budget_s``: configs
    not compiled by then are left out (default and heuristic are compiled
    first); ``budget_s``: points not reached by then are left out (recorded).
    """
    sys.path.insert(0, str(REPO))
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.heuristic import heuristic_config
    from sglang_consumer_gpu.moe.shape import MoeShape

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(plan_path.read_text())
    prevs = [json.loads(p.read_text()) for p in previous]
    spec = find_gpu("NVIDIA GeForce RTX 4090")
    b = Bench()
    import torch
    import triton

    todo: list[dict[str, Any]] = []
    jobs = []
    skipped_cases = []
    for ci, c in enumerate(doc["cases"]):
        if not _selected(c["name"], only, c["dtype"]):
            continue
        pcs = [
            x for prev in prevs for x in prev["cases"] if x["name"] == c["name"] and x["dtype"] == c["dtype"]
        ]
        if not pcs:
            skipped_cases.append(f"{c['name']}|{c['dtype']}")
            continue
        shape = MoeShape(c["E"], c["N"], c["K"], c["topk"], c["dtype"])
        for p in c["points"]:
            M = p["M"]
            cands = {cfg_key(p["default"]): p["default"]}
            h = heuristic_config(M, shape, spec)
            cands[cfg_key(h)] = h
            for pc in pcs:
                pp = next((x for x in pc["points"] if x["M"] == M), None)
                if pp is None:
                    continue
                ranked = sorted(pp["space_us"], key=pp["space_us"].get)[:5]
                for k in [*ranked, cfg_key(pp["best"]["config"])]:
                    cands[k] = _parse_key(k)
            if M <= 64:
                for cfg in c["space"]:
                    if cfg["BLOCK_SIZE_M"] <= 32:
                        cfg = {k: cfg[k] for k in KEYS}
                        cands[cfg_key(cfg)] = cfg
            todo.append(
                {"ci": ci, "M": M, "cands": cands, "heuristic": cfg_key(h), "default": cfg_key(p["default"])}
            )
            jobs += [(ci, M, cfg) for cfg in cands.values()]
    named = {(it["ci"], it[n]) for it in todo for n in ("default", "heuristic")}
    deadline = t0 + warm_budget_s if warm_budget_s else None
    failed, late = _parallel_warm(plan_path, jobs, workers, deadline, named)
    print(
        f"warm-up: {len(jobs)} launches in {time.time() - t0:.0f} s; {len(failed)} failed; "
        f"{len(late)} (case, config) not reached in time",
        flush=True,
    )
    _burn_in(b)
    results: dict[str, Any] = {
        "mode": "confirm",
        "device": torch.cuda.get_device_name(),
        "triton_device": triton.__version__,
        "torch_device": torch.__version__,
        "previous": [p.name for p in previous],
        "plan_file": plan_path.name,
        "prove_per_shape": doc.get("prove_per_shape", False),
        "cases_without_previous": skipped_cases,
        "compile_failed_on_device": sorted(f"{doc['cases'][ci]['name']}|{k}" for ci, k in failed),
        "not_warmed_in_time": sorted(
            f"{doc['cases'][ci]['name']}|{doc['cases'][ci]['dtype']}|{k}" for ci, k in late
        ),
        "warm_s": time.time() - t0,
        "points_not_reached": [],
        "cases": [],
    }
    failed |= late
    by_case: dict[int, dict[str, Any]] = {}
    for item in todo:
        ci, M = item["ci"], item["M"]
        if budget_s is not None and time.time() - t0 > budget_s:
            results["points_not_reached"].append(
                f"{doc['cases'][ci]['name']}|{doc['cases'][ci]['dtype']}|{M}"
            )
            continue
        c = doc["cases"][ci]
        if ci not in by_case:
            for old in by_case.values():
                old.pop("_d", None)
            torch.cuda.empty_cache()
            cres = {k: c[k] for k in ("name", "E", "N", "K", "topk", "dtype")}
            cres.update(space_size=len(c["space"]), points=[], _d=b.make_case(c, c["dtype"]))
            by_case[ci] = cres
            results["cases"].append(cres)
        cres = by_case[ci]
        d = cres["_d"]
        inp = b.make_inputs(d, M, seed=M)
        timings = {}
        for k, cfg in item["cands"].items():
            if (ci, k) in failed and k not in (item["default"], item["heuristic"]):
                continue
            try:
                timings[k] = b.time_cfg(b.runner(d, inp, cfg))
            except Exception as exc:
                print(f"{c['name']} M={M} {k} failed: {type(exc).__name__}"[:200], flush=True)
        best = min(timings, key=timings.get)
        pr = {"M": M, "space_us": timings}
        for name, k in (("default", item["default"]), ("heuristic", item["heuristic"]), ("best", best)):
            cfg = item["cands"][k]
            if k not in timings:  # did not compile or run on this Triton: recorded, not hidden
                pr[name] = {"config": cfg, "us": math.inf, "rel_err": None}
                continue
            pr[name] = {"config": cfg, "us": timings[k], "rel_err": b.check(d, inp, b.runner(d, inp, cfg))}
        cres["points"].append(pr)
        print(
            f"{c['name']:>17} {c['dtype'] or 'bf16':>8} M={M:>5}: best {timings[best]:.1f} us "
            f"heur {pr['heuristic']['us']:.1f} default {pr['default']['us']:.1f} ({len(timings)} configs, "
            f"{time.time() - t0:.0f} s)",
            flush=True,
        )
        if c["points"][-1]["M"] == M:  # case done: keep what we have if the call is cut short
            _dump({**results, "cases": [_public(x) for x in results["cases"]]}, out, stem)
    for cres in results["cases"]:
        cres.pop("_d", None)
    results["wall_s"] = time.time() - t0
    _dump(results, out, stem)
    print(report_table(results))
    try:
        plot(results, out / f"{stem}.png")
    except Exception as exc:
        print(f"plot failed: {exc}")


def _oracle_device_worker(item: tuple[tuple[int, int, int, int, str | None], dict[str, Any]]) -> int:
    """Shared memory of one config on sm_89, compiled by THIS machine's Triton (both GEMMs)."""
    sys.path.insert(0, str(REPO))
    _import_sglang_kernels()
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.oracle_bridge import _direct
    from sglang_consumer_gpu.moe.shape import MoeShape

    (E, N, K, topk, dtype), cfg = item
    shape = MoeShape(E, N, K, topk, dtype)
    spec = find_gpu("NVIDIA GeForce RTX 4090")
    return max(_direct(spec, shape, 64, cfg, down).shared for down in (False, True))


def _oracle_check_device(results: dict[str, Any], workers: int = 1) -> dict[str, Any]:
    """The winners, heuristic and default configs, compiled for sm_89 under THIS Triton (3.6)."""
    out: dict[str, Any] = {}
    try:
        sys.path.insert(0, str(REPO))
        from sglang_consumer_gpu.hardware import find_gpu

        limit = find_gpu("NVIDIA GeForce RTX 4090").smem_per_block_optin
        items: dict[str, Any] = {}
        for cres in results["cases"]:
            dims = (cres["E"], cres["N"], cres["K"], cres["topk"], cres["dtype"])
            for pr in cres["points"]:
                for name in ("default", "heuristic", "best"):
                    cfg = pr.get(name, {}).get("config")
                    if cfg:
                        items.setdefault(f"{cres['name']}|{cres['dtype']}|{cfg_key(cfg)}", (dims, cfg))
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(min(workers, len(items) or 1)) as pool:
                shared = pool.map(_oracle_device_worker, list(items.values()))
        else:
            shared = [_oracle_device_worker(it) for it in items.values()]
        for key, sh in zip(items, shared, strict=True):
            out[key] = {"shared_sm89": sh, "fits": sh <= limit}
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _selected(name: str, only: str | None, dtype: str | None = None) -> bool:
    """``only``: comma-separated substrings of case names, each optionally ``|DTYPE``
    (bf16 or fp8_w8a8) to pick one dtype of the shape (None: every case)."""
    if not only:
        return True
    for o in only.split(","):
        sub, _, want = o.strip().partition("|")
        if sub and sub in name and (not want or want == (dtype or "bf16")):
            return True
    return False


def _parse_key(k: str) -> dict[str, int]:
    tile, g, w, s = k.split("-")
    bm, bn, bk = (int(x) for x in tile.split("x"))
    return {
        "BLOCK_SIZE_M": bm,
        "BLOCK_SIZE_N": bn,
        "BLOCK_SIZE_K": bk,
        "GROUP_SIZE_M": int(g[1:]),
        "num_warps": int(w[1:]),
        "num_stages": int(s[1:]),
    }


def _public(cres: dict[str, Any]) -> dict[str, Any]:
    """A case result without its private (tensor-holding) keys."""
    return {k: v for k, v in cres.items() if not k.startswith("_")}


def _dump(results: dict[str, Any], out: Path, stem: str = "moe_bench") -> None:
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))


# ----------------------------------------------------------------------------- report


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in results["cases"]:
        pts = [p for p in c["points"] if p.get("best")]
        hb = [p["best"]["us"] / p["heuristic"]["us"] for p in pts]
        hd = [p["default"]["us"] / p["heuristic"]["us"] for p in pts]
        db = [p["best"]["us"] / p["default"]["us"] for p in pts]
        rows.append(
            {
                "case": c["name"],
                "dtype": c["dtype"] or "bf16",
                "space": c["space_size"],
                "M": [p["M"] for p in pts],
                "heur_vs_best": hb,
                "heur_vs_default": hd,
                "default_vs_best": db,
                "geo_heur_vs_best": _geomean(hb),
                "min_heur_vs_best": min(hb) if hb else float("nan"),
                "geo_heur_vs_default": _geomean(hd),
                "geo_best_vs_default": _geomean([1 / x for x in db]),
                "max_rel_err": max(
                    (
                        p[n]["rel_err"]
                        for p in pts
                        for n in ("default", "heuristic", "best")
                        if p[n].get("rel_err") is not None
                    ),
                    default=None,
                ),
            }
        )
    return rows


def report_table(results: dict[str, Any]) -> str:
    lines = [
        f"device: {results.get('device')} (Triton {results.get('triton_device')}); "
        f"timings are ratios of SGLang's fused_moe_kernel (both GEMMs) measured in one run",
        "",
        "| shape | dtype | configs | heuristic / feasible best (geomean, min) | heuristic vs SGLang RTX-4090 default (geomean) | best vs default | max rel err |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summarize(results):
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['space']} | {r['geo_heur_vs_best']:.3f} ({r['min_heur_vs_best']:.3f}) "
            f"| x{r['geo_heur_vs_default']:.3f} | x{r['geo_best_vs_default']:.3f} | {r['max_rel_err']:.1e} |"
        )
    lines.append("")
    lines.append("per point, heuristic speed / best speed (M: ratio):")
    for r in summarize(results):
        pts = ", ".join(f"{m}: {x:.2f}" for m, x in zip(r["M"], r["heur_vs_best"], strict=True))
        dpts = ", ".join(f"{m}: {x:.2f}" for m, x in zip(r["M"], r["heur_vs_default"], strict=True))
        lines.append(f"- {r['case']} {r['dtype']}: vs best {pts}; vs default {dpts}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarize(results)
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.6), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        ax.plot(r["M"], r["heur_vs_best"], "o-", label="plugin heuristic")
        ax.plot(r["M"], r["default_vs_best"], "s--", label="SGLang default (RTX 4090)")
        ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{r['case']} {r['dtype']}", fontsize=9)
        ax.set_xlabel("batch size M")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("speed / sm_89-feasible best")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"SGLang fused MoE, sm_89-feasible configs timed on {results.get('device')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--out", type=Path, default=REPO / "results" / "moe_bench_plan.json")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument(
        "--shapes", help=f"NAME[,NAME] from {', '.join(SHAPES)} or 'heldout' (default: the first three)"
    )
    p.add_argument("--prove-per-shape", action="store_true", help="prove the space on each shape (stricter)")
    mg = sub.add_parser("merge", help="one plan from several, heuristic refreshed")
    mg.add_argument("--out", type=Path, required=True)
    mg.add_argument("plans", type=Path, nargs="+")
    mg.add_argument("--order", help="NAME|DTYPE,... cases to put first (stable otherwise)")
    r = sub.add_parser("run")
    r.add_argument("--plan", type=Path, default=REPO / "results" / "moe_bench_plan.json")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "results")))
    r.add_argument("--workers", type=int, default=15)
    r.add_argument("--budget-s", type=float, default=500)
    r.add_argument("--only", help="run only cases whose name contains one of these (comma-separated)")
    r.add_argument("--stem", default="moe_bench", help="output file names: STEM.json, STEM.png")
    r.add_argument("--small-m-full", action="store_true", help="no early exit for BLOCK_M <= 32 at M <= 64")
    r.add_argument("--warm-budget-s", type=float, help="leave out space configs not compiled by then")
    cf = sub.add_parser("confirm")
    cf.add_argument("--plan", type=Path, default=REPO / "results" / "moe_bench_plan.json")
    cf.add_argument(
        "--previous",
        default=str(REPO / "results" / "moe_bench.json"),
        help="comma-separated result files whose top configs are re-timed",
    )
    cf.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "results")))
    cf.add_argument("--workers", type=int, default=15)
    cf.add_argument("--stem", default="moe_bench_confirm", help="output file names: STEM.json, STEM.png")
    cf.add_argument("--only", help="comma-separated substrings of case names, each optionally |DTYPE")
    cf.add_argument("--budget-s", type=float, help="leave out points not reached by then")
    cf.add_argument("--warm-budget-s", type=float, help="leave out configs not compiled by then")
    rep = sub.add_parser("report")
    rep.add_argument("results", type=Path)
    rep.add_argument("--plot", type=Path)
    a = ap.parse_args()
    if a.cmd == "plan":
        plan(a.out, a.jobs, a.shapes, a.prove_per_shape)
    elif a.cmd == "merge":
        merge_plans(a.out, a.plans, a.order)
    elif a.cmd == "run":
        run(a.plan, a.out, a.workers, a.budget_s, a.only, a.stem, a.small_m_full, a.warm_budget_s)
    elif a.cmd == "confirm":
        previous = [Path(p) for p in a.previous.split(",") if p]
        confirm(a.plan, previous, a.out, a.workers, a.stem, a.only, a.budget_s, a.warm_budget_s)
    else:
        res = json.loads(a.results.read_text())
        print(report_table(res))
        if a.plot:
            plot(res, a.plot)


if __name__ == "__main__":
    main()
