"""The safety net on a real GPU whose shared memory is capped to a consumer GPU's 101,376 bytes.

Run on the device machine (an H200: sm_90 code, Triton 3.6, SGLang imported
normally) under the end-to-end harness's cap::

    SGLANG_CONSUMER_GPU_EMULATE_SMEM=101376 PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/device/safety_check.py --out $OUT

If Triton's driver does not report the cap (the harness's emulation is not in
this tree), the script wraps ``driver.active.utils.get_device_properties``
itself, the same way, and says so in the JSON (``cap.source``). Checks, all
SGLang's own launchers and kernels on real data:

- ``moe``: fused MoE with the old 128x128x128, 4-stage tile (262,144 B on
  sm_90) completes through the guard (fewer stages) and matches the uncapped
  run bit for bit, and a float32 reference;
- ``extend``: extend attention with SGLang's sm_90 tile for the MLA shape
  (Lq=576, Lv=512: 32x64, one stage, 106,496 B) completes (BLOCK_N 64 -> 32)
  and matches the uncapped run and a float32 reference to rounding;
  ``dense_prefill`` the same where SGLang has it (0.5.23, not 0.5.17);
- ``unsalvageable``: unified extend attention (deterministic inference) for
  the same shape cannot be saved (one stage, no shrink rule: its tile fixes the
  numerics) and fails with the safety net's message;
- ``matmul_invariance``: the batch-invariant persistent matmul (fp16
  128x256x64, 3 stages) under the cap: rows bitwise equal across batch sizes,
  and bitwise equal to the uncapped kernel;
- ``cuda_graph``: a fused-MoE configuration launched for the first time inside
  ``torch.cuda.graph`` capture is fitted there; the replay equals the eager run
  (and a control config that fits shows Triton's own first launch in capture);
- ``longtail``: ``scripts/longtail_sweep.py``'s kernels with real tensors, zero
  shared-memory failures (two parallel processes);
- ``overhead``: host time per launch with and without the guard installed for
  SGLang's smallest Triton launch and for a fitted fused-MoE launch, and the
  ratio (target: within 1% of a launch or 1 microsecond, whichever is larger);
  also ``safety_overhead.png``.

The uncapped references come from a second process started at the beginning
(``--part reference``: no cap, plugin off) that computes the same launches on
the same seeded inputs; their input hashes are compared too. Writes
``safety_check.json`` (``pass`` per check and overall), ``reference.json``,
``longtail_device.json`` and ``safety_overhead.png`` under ``--out``.

The inputs and float32 references are the engine's (:class:`~sglang_consumer_gpu.measure.moe.MoeLayer`
``up_gemm``/``up_reference``, :class:`~sglang_consumer_gpu.measure.attention.ExtendRun`), the cap is the
emulation's driver hook; what stays here is the orchestration and each check's verdict. ``--dry-run``
builds every input and reference on the CPU and launches nothing (``tests/test_safety_check_script.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.measure.attention import ExtendCase, ExtendRun
from sglang_consumer_gpu.measure.common import sglang_version
from sglang_consumer_gpu.measure.moe import MoeCase, MoeLayer
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.patches import attention_extend, moe_config
from sglang_consumer_gpu.patches.safety_net import BATCH_INVARIANT

EMULATE_ENV = "SGLANG_CONSUMER_GPU_EMULATE_SMEM"
DEFAULT_CAP = 101_376
MOE = moe_config.LAUNCHER.module
EXTEND = attention_extend.MODULE
BIO = BATCH_INVARIANT.module
#: The limit of the one launch ``check_unsalvageable`` makes (sm_75's 64 KB).
TIGHT_LIMIT = 65_536
OLD_MOE_TILE = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 8, "num_stages": 4}  # fmt: skip
CAPTURE_TILE = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 4}  # fmt: skip
CONTROL_TILE = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 2}  # fmt: skip
#: The fused-MoE layer of the checks (bf16); each check launches its up GEMM alone (one kernel launch).
MOE_CASE = MoeCase(MoeShape(E=8, N=512, K=2048, topk=2), M=256)
#: Two sequences with a cached prefix and new (extend) tokens, MLA head dims, one KV head.
EXTEND_CASE = ExtendCase(576, 512, 16, 1, extend_lens=(64, 40), prefix_lens=(48, 80))
MATMUL_BATCHES = (1, 3, 16, 64, 129, 512)
MATMUL_K = MATMUL_N = 4096
LONGTAIL_GROUPS = ("bio", "fp8")  # scripts/longtail_sweep.py's case groups, one process each
CHECKS = ("moe", "extend", "dense_prefill", "unsalvageable", "matmul_invariance", "cuda_graph", "longtail", "overhead")


def _torch() -> Any:
    import torch

    return torch


def _hash(t: Any) -> str:
    return hashlib.sha256(t.detach().contiguous().view(_torch().uint8).cpu().numpy().tobytes()).hexdigest()[
        :16
    ]


# --- the cap and the plugin -----------------------------------------------------------------


def apply_cap(limit: int) -> dict[str, Any]:
    """Make Triton's driver report ``limit`` bytes, unless the harness's emulation already does."""
    torch = _torch()
    from triton.runtime.driver import driver

    from sglang_consumer_gpu.emulation.hooks import TRITON_DRIVER, patch_triton_driver

    utils = driver.active.utils
    device = torch.cuda.current_device()
    before = int(utils.get_device_properties(device)["max_shared_mem"])
    source = "environment"
    if before != limit:  # the emulation's own hook, on the driver this process already made
        patch_triton_driver(importlib.import_module(TRITON_DRIVER), limit)
        source = "script"
    return {"limit": limit, "source": source, "reported_before": before, "reported": int(utils.get_device_properties(device)["max_shared_mem"])}  # fmt: skip


@contextlib.contextmanager
def plugin_for_cap(limit: int) -> Iterator[dict[str, Any]]:
    """The plugin decides for this GPU with ``limit`` bytes; only the safety net is active.

    SGLang's tile patches (the plugin's patches of ``sglang.*`` modules) are
    undone here so that SGLang's own data-center tiles reach the guard.
    """
    from sglang_consumer_gpu.hardware import current_spec
    from sglang_consumer_gpu.hardware.current import override_spec
    from sglang_consumer_gpu.patches import safety_net
    from sglang_consumer_gpu.patching import registry
    from sglang_consumer_gpu.patching.registry import unpatched

    live = current_spec()
    if live is None:  # no NVML here: describe the GPU from torch
        from sglang_consumer_gpu.hardware.spec import GpuSpec

        torch = _torch()
        p = torch.cuda.get_device_properties(torch.cuda.current_device())
        live = GpuSpec(
            p.name, (p.major, p.minor), limit, p.multi_processor_count, p.total_memory, 0.0, "live"
        )
    spec = (
        live if live.smem_per_block_optin == limit else dataclasses.replace(live, smem_per_block_optin=limit)
    )
    with override_spec(spec) if spec is not live or current_spec() is None else contextlib.nullcontext():
        undone = [p.name for p in registry.patches() if not p.triton_only and registry.installed(p)]
        with unpatched():
            yield {"spec": spec.to_dict(), "safety_net": safety_net.install(), "undone": undone}


# --- inputs (seeded, identical in both processes) ----------------------------------------------


def moe_layer(seed: int, device: str = "cuda") -> MoeLayer:
    """:data:`MOE_CASE` built by the engine (seeded weights, activations, routing; NaN-poisoned
    outputs); ``layer.up_gemm(config)(0)`` is one launch of SGLang's ``fused_moe_kernel``."""
    return MoeLayer(MOE_CASE, device=device, seed=seed, slots=1)


def extend_run(seed: int, *, prefix: bool = True, device: str = "cuda") -> ExtendRun:
    """:data:`EXTEND_CASE` built by the engine; without ``prefix`` the same extend tokens with
    no cached prefix (what ``dense_prefill_attention_fwd`` computes, so its float32 reference)."""
    case = EXTEND_CASE if prefix else dataclasses.replace(EXTEND_CASE, prefix_lens=(0,) * len(EXTEND_CASE.prefix_lens))
    return ExtendRun(case, device=device, seed=seed, slots=1)


def extend_launch(run: ExtendRun, launcher: str = "extend_attention_fwd") -> Any:
    """One of SGLang's extend-attention launchers on ``run``'s inputs; returns the output."""
    x, case = run.slots[0], run.case
    max_extend = max(case.extend_lens)
    if launcher == "extend_attention_fwd":
        run.run()(0)
    elif launcher == "dense_prefill_attention_fwd":  # one-shot prefill of the extend tokens, no cached prefix
        run.ea.dense_prefill_attention_fwd(
            x.q, x.k, x.v, x.o, x.qo_indptr, x.qo_indptr, max_extend, sm_scale=run.scale
        )
    else:  # unified (deterministic inference): prefix and extend keys all read from the buffer
        torch = _torch()
        lens = [p + e for p, e in zip(case.prefix_lens, case.extend_lens, strict=True)]
        kv_indptr = torch.tensor([0, lens[0], sum(lens)], device=run.device, dtype=torch.int32)
        # any valid slots: this launch is only ever refused at compile time
        kv_indices = torch.arange(sum(lens), device=run.device, dtype=torch.int64) % x.k_buf.shape[0]
        prefix = torch.tensor(case.prefix_lens, device=run.device, dtype=torch.int32)
        run.ea.extend_attention_fwd_unified(
            x.q, x.o, x.k_buf, x.v_buf, 1.0, 1.0, x.qo_indptr, kv_indptr, kv_indices, prefix, max_extend,
            sm_scale=run.scale,
        )  # fmt: skip
    return x.o


def matmul_inputs(seed: int, device: str = "cuda") -> tuple[Any, Any]:
    torch = _torch()
    g = torch.Generator(device=device).manual_seed(seed)
    x = (torch.randn(max(MATMUL_BATCHES), MATMUL_K, device=device, generator=g) * 0.5).to(torch.float16)
    w = (torch.randn(MATMUL_N, MATMUL_K, device=device, generator=g) * 0.02).to(torch.float16)
    return x, w.t()  # weight^T, as F.linear hands it


def matmul_run(x: Any, wt: Any, batch: int) -> Any:
    from scripts.longtail_sweep import matmul

    return matmul(importlib.import_module(BIO), x[:batch], wt)


# --- the checks ------------------------------------------------------------------------------


def _diff(got: Any, ref: Any) -> dict[str, Any]:
    got, ref = got.float(), ref.float()
    scale = float(ref.abs().max().clamp_min(1e-6))
    return {"max_abs": float((got - ref).abs().max()), "max_rel": float((got - ref).abs().max()) / scale}


def _interventions(kernel: str, config: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The safety net's decisions for ``kernel`` (for launches with ``config``, when given)."""
    from sglang_consumer_gpu.safety import state

    out = [dataclasses.asdict(iv) for iv in state.local() if iv.kernel == kernel]
    if config is not None:
        out = [
            iv
            for iv in out
            if all(iv["before"].get(k, v) == v for k, v in config.items() if k != "GROUP_SIZE_M")
        ]
    return out


def check_moe(reference: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    torch = _torch()
    layer = moe_layer(1)
    out = layer.up_gemm(OLD_MOE_TILE)(0).clone()
    torch.cuda.synchronize()
    row: dict[str, Any] = {
        "config": OLD_MOE_TILE,
        "interventions": _interventions("fused_moe_kernel", OLD_MOE_TILE),
    }
    row["vs_fp32"] = _diff(out, layer.up_reference(0))
    row["input_hash"] = _hash(layer.w1[0])
    row["output_hash"] = _hash(out)
    ref = reference()
    if "moe" in ref:
        row["same_inputs_as_uncapped"] = ref["moe"]["input_hash"] == row["input_hash"]
        row["bitwise_equal_uncapped"] = ref["moe"]["output_hash"] == row["output_hash"]
        row["uncapped_num_stages"] = ref["moe"].get("num_stages")
    row["pass"] = bool(
        row["interventions"]
        and row["vs_fp32"]["max_rel"] < 2e-2
        and row.get("same_inputs_as_uncapped")
        and row.get("bitwise_equal_uncapped")
    )
    return row


def check_extend(
    reference: Callable[[], dict[str, Any]], launcher: str, kernel: str, key: str
) -> dict[str, Any]:
    torch = _torch()
    if not hasattr(importlib.import_module(EXTEND), launcher):
        return {"skipped": f"{launcher} is not in this SGLang", "pass": True}
    run = extend_run(2, prefix=launcher != "dense_prefill_attention_fwd")
    out = extend_launch(run, launcher).clone()
    torch.cuda.synchronize()
    row: dict[str, Any] = {"interventions": _interventions(kernel)}
    row["vs_fp32"] = _diff(out, run.reference(0))
    row["input_hash"] = _hash(run.slots[0].q)
    ref = reference()
    if key in ref:
        uncapped = torch.load(ref["tensors"], map_location="cuda")[key]
        row["same_inputs_as_uncapped"] = ref[key]["input_hash"] == row["input_hash"]
        row["vs_uncapped"] = _diff(out, uncapped)
    changed = any(iv["outcome"] == "fitted" and "BLOCK_N" in iv["after"] for iv in row["interventions"])
    row["pass"] = bool(
        changed
        and row["vs_fp32"]["max_rel"] < 2e-2
        and row.get("same_inputs_as_uncapped")
        and row.get("vs_uncapped", {}).get("max_rel", 1.0) < 1e-2
    )
    return row


def check_unsalvageable() -> dict[str, Any]:
    from triton.runtime import driver

    from sglang_consumer_gpu.safety.guard import SharedMemoryError

    run = extend_run(3)
    row: dict[str, Any] = {"kernel": "_fwd_kernel_unified"}
    # SGLang 0.5.17's unified kernel fits 101,376 B at one stage on sm_90 (seen on the H200), so
    # this check asks for a T4-class limit (64 KB) for its one launch: its tile fixes the
    # numerics, no stage count or rule can save it there, and the guard must say so.
    utils = driver.active.utils
    real = utils.get_device_properties
    row["limit"] = TIGHT_LIMIT
    utils.get_device_properties = lambda device: {**real(device), "max_shared_mem": TIGHT_LIMIT}
    try:
        extend_launch(run, "extend_attention_fwd_unified")
        _torch().cuda.synchronize()
        row["raised"] = None
    except Exception as exc:
        row["raised"] = type(exc).__name__
        row["message"] = str(exc)
        row["is_safety_net_error"] = isinstance(exc, SharedMemoryError)
    finally:
        utils.get_device_properties = real
    msg = row.get("message", "")
    row["pass"] = bool(
        row.get("is_safety_net_error")
        and "_fwd_kernel_unified" in msg
        and "Required: " in msg
        and "Hardware limit: " in msg
        and "What you can do:" in msg
    )
    return row


def check_matmul(reference: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    torch = _torch()
    x, wt = matmul_inputs(4)
    outs = {b: matmul_run(x, wt, b).clone() for b in MATMUL_BATCHES}
    torch.cuda.synchronize()
    full = outs[max(MATMUL_BATCHES)]
    row: dict[str, Any] = {
        "batches": list(MATMUL_BATCHES),
        "rows_bitwise_equal": {str(b): bool(torch.equal(o, full[:b])) for b, o in outs.items()},
        "interventions": _interventions("matmul_kernel_persistent"),
        "output_hash": _hash(full),
        "input_hash": _hash(x),
    }
    ref = reference()
    if "matmul" in ref:
        row["same_inputs_as_uncapped"] = ref["matmul"]["input_hash"] == row["input_hash"]
        row["bitwise_equal_uncapped"] = ref["matmul"]["output_hash"] == row["output_hash"]
    stage_only = all(set(iv["after"]) == {"num_stages"} for iv in row["interventions"])
    row["pass"] = bool(
        row["interventions"]
        and stage_only
        and all(row["rows_bitwise_equal"].values())
        and row.get("same_inputs_as_uncapped")
        and row.get("bitwise_equal_uncapped")
    )
    return row


def check_cuda_graph() -> dict[str, Any]:
    torch = _torch()
    row: dict[str, Any] = {}
    for name, tile, seed in (("control", CONTROL_TILE, 5), ("fitted_in_capture", CAPTURE_TILE, 6)):
        layer = moe_layer(seed)
        launch = layer.up_gemm(tile)  # routing aligned here, before the capture
        sub: dict[str, Any] = {"config": tile}
        try:
            graph = torch.cuda.CUDAGraph()
            torch.cuda.synchronize()
            with torch.cuda.graph(
                graph
            ):  # the first launch of this configuration: compiled (and fitted) here
                launch(0)
            layer.slots[0].c1.zero_()
            graph.replay()
            torch.cuda.synchronize()
            replayed = layer.slots[0].c1.clone()
            eager = launch(0).clone()
            torch.cuda.synchronize()
            sub["replay_equals_eager"] = bool(torch.equal(replayed, eager))
            sub["vs_fp32"] = _diff(eager, layer.up_reference(0))
        except Exception as exc:
            sub["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
        sub["interventions"] = _interventions("fused_moe_kernel", tile)
        row[name] = sub
    fitted = row["fitted_in_capture"]
    row["pass"] = bool(
        row["control"].get("replay_equals_eager")
        and not row["control"]["interventions"]
        and fitted.get("replay_equals_eager")
        and fitted.get("interventions")
        and fitted.get("vs_fp32", {}).get("max_rel", 1.0) < 2e-2
    )
    return row


# --- hot-path overhead ---------------------------------------------------------------------


def _timed(fn: Callable[[], Any], n: int) -> float:
    torch = _torch()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def bench_overhead(rounds: int = 15, launches: int = 1000) -> dict[str, Any]:
    """Host microseconds per launch, guard installed vs not, interleaved rounds, medians."""
    from triton.runtime.jit import JITFunction

    from sglang_consumer_gpu.patching import registry

    torch = _torch()
    bio = importlib.import_module(BIO)
    guarded = JITFunction._do_compile
    marker = getattr(guarded, registry.MARKER, None)
    if marker is None:
        return {"error": "the safety net is not installed"}
    unguarded = marker[1]
    xs = torch.randn(1, 128, device="cuda", dtype=torch.bfloat16)
    ws = torch.ones(128, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(xs)
    layer = moe_layer(7)
    fitted_moe, native_moe = layer.up_gemm(OLD_MOE_TILE), layer.up_gemm({**OLD_MOE_TILE, "num_stages": 1})
    kernels: dict[str, Callable[[], Any]] = {
        # SGLang's smallest launch: one row of RMSNorm, its Triton kernel called as rms_norm() calls it
        "rms_norm kernel 1x128 (raw launch)": lambda: bio._rms_norm_kernel[(1,)](
            xs, ws, out, xs.stride(0), out.stride(0), 128, 1e-6, BLOCK_SIZE=1024
        ),
        "rms_norm() 1x128 (SGLang launcher)": lambda: bio.rms_norm(xs, ws, 1e-6),
        "fused MoE, 4-stage tile fitted by the guard": lambda: fitted_moe(0),
        "fused MoE, the same kernel asked for at 1 stage": lambda: native_moe(0),
    }
    for fn in kernels.values():  # compile (and fit) everything first; clocks up
        for _ in range(50):
            fn()
    samples: dict[str, dict[str, list[float]]] = {k: {"guarded": [], "unguarded": []} for k in kernels}
    try:
        for r in range(rounds):
            order = ("guarded", "unguarded") if r % 2 == 0 else ("unguarded", "guarded")
            for variant in order:
                JITFunction._do_compile = guarded if variant == "guarded" else unguarded
                for name, fn in kernels.items():
                    samples[name][variant].append(_timed(fn, launches))
    finally:
        JITFunction._do_compile = guarded
    rows = []
    for name, s in samples.items():
        g, u = statistics.median(s["guarded"]), statistics.median(s["unguarded"])
        rows.append(
            {
                "kernel": name,
                "guarded_us": g,
                "unguarded_us": u,
                "ratio": g / u,
                "delta_us": g - u,
                "samples": s,
            }
        )
    smallest = min(r["unguarded_us"] for r in rows)
    budget = max(1.0, 0.01 * smallest)
    by_name = {r["kernel"]: r for r in rows}
    fitted, native = (by_name[k]["guarded_us"] for k in list(kernels)[2:4])
    return {
        "fitted_vs_native_one_stage": fitted / native,
        "rounds": rounds,
        "launches_per_round": launches,
        "smallest_launch_us": smallest,
        "budget_us": budget,
        "rows": rows,
        "pass": all(r["delta_us"] <= budget for r in rows),
    }


def plot_overhead(result: dict[str, Any], path: Path) -> Path | None:
    """Per round, guarded minus unguarded host time per launch, against the budget."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows, budget = result["rows"], result["budget_us"]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.7 * len(rows)))
    for i, row in enumerate(rows):
        deltas = [g - u for g, u in zip(row["samples"]["guarded"], row["samples"]["unguarded"], strict=True)]
        ax.scatter(deltas, [i] * len(deltas), s=14, alpha=0.6, color="tab:blue")
        ax.plot([row["delta_us"]] * 2, [i - 0.25, i + 0.25], color="tab:blue", lw=2)
        ax.annotate(
            f"{row['unguarded_us']:.1f} us/launch, x{row['ratio']:.3f}",
            (budget, i),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    for x in (-budget, budget):
        ax.axvline(x, color="tab:red", ls="--", lw=1)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["kernel"] for r in rows])
    ax.set_xlabel(
        "guarded - unguarded host time per launch, microseconds (dots: rounds; bar: median of medians)"
    )
    ax.set_title(f"Safety-net hot-path cost; dashed: the budget, +-{budget:.2f} us")
    ax.set_xlim(-2.5 * budget, 4.5 * budget)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


# --- parts --------------------------------------------------------------------------------------


def part_reference(out: Path) -> dict[str, Any]:
    """The same launches without the cap and without the plugin."""
    torch = _torch()
    from triton.runtime.errors import OutOfResources

    doc: dict[str, Any] = {"tensors": str(out / "reference.pt"), "errors": {}}
    tensors: dict[str, Any] = {}

    def part(name: str, fn: Callable[[], None]) -> None:  # one failing reference leaves the others
        try:
            fn()
        except Exception as exc:
            doc["errors"][name] = f"{type(exc).__name__}: {str(exc)[:300]}"

    def moe() -> None:
        # The old tile does not fit even an uncapped H200 at 4 stages (262,144 > 232,448 B on sm_90):
        # the reference runs it at the deepest pipeline that fits, which keeps the tile and, as
        # stages only pipeline the K loop, the summation order.
        layer = moe_layer(1)
        for stages in range(OLD_MOE_TILE["num_stages"], 0, -1):
            try:
                result = layer.up_gemm({**OLD_MOE_TILE, "num_stages": stages})(0)
            except OutOfResources:
                continue
            doc["moe"] = {"input_hash": _hash(layer.w1[0]), "output_hash": _hash(result), "num_stages": stages}
            return
        raise RuntimeError("the old tile fits no pipeline depth uncapped")

    def extend() -> None:
        ea = importlib.import_module(EXTEND)
        for key, launcher in (
            ("extend", "extend_attention_fwd"),
            ("dense_prefill", "dense_prefill_attention_fwd"),
        ):
            if hasattr(ea, launcher):
                run = extend_run(2, prefix=launcher != "dense_prefill_attention_fwd")
                tensors[key] = extend_launch(run, launcher).clone()
                doc[key] = {"input_hash": _hash(run.slots[0].q)}

    def matmul() -> None:
        xm, wt = matmul_inputs(4)
        doc["matmul"] = {"input_hash": _hash(xm), "output_hash": _hash(matmul_run(xm, wt, max(MATMUL_BATCHES)))}

    for name, fn in (("moe", moe), ("extend", extend), ("matmul", matmul)):
        part(name, fn)
    torch.cuda.synchronize()
    torch.save(tensors, out / "reference.pt")
    return doc


def _check(name: str, fn: Callable[[], dict[str, Any]], results: dict[str, Any]) -> None:
    t0 = time.time()
    try:
        results[name] = fn()
    except Exception as exc:
        results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}", "trace": traceback.format_exc()[-3000:], "pass": False}  # fmt: skip
    results[name]["seconds"] = round(time.time() - t0, 1)
    print(
        json.dumps({name: {k: v for k, v in results[name].items() if k not in ("trace", "rows")}})[:1500],
        flush=True,
    )


def _child(part: str, out: Path, env_changes: dict[str, str | None], *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    log = open(out / f"{'_'.join([part, *extra[1::2]])}.log", "wb")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [sys.executable, __file__, "--part", part, "--out", str(out), *extra],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def part_main(out: Path, cap: int) -> dict[str, Any]:
    t0 = time.time()
    reference = _child("reference", out, {EMULATE_ENV: None, "SGLANG_CONSUMER_GPU": "0"})
    longtail = {g: _child("longtail", out, {EMULATE_ENV: str(cap)}, "--group", g) for g in LONGTAIL_GROUPS}
    import torch
    import triton

    for name in (MOE, EXTEND, BIO):
        importlib.import_module(name)
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "versions": {"torch": torch.__version__, "triton": triton.__version__, "sglang": sglang_version()},
    }
    results["cap"] = apply_cap(cap)
    with plugin_for_cap(cap) as plugin:
        results["plugin"] = plugin

        @functools.cache
        def ref() -> dict[str, Any]:
            """The uncapped process's results (waits for it the first time)."""
            code = _wait(reference, 420)
            path = out / "reference.json"
            doc = json.loads(path.read_text()) if path.exists() else {}
            results["reference"] = {"returncode": code, "has": sorted(doc), "errors": doc.get("errors")}
            return doc

        _check("unsalvageable", check_unsalvageable, results)
        _check("moe", lambda: check_moe(ref), results)
        _check("extend", lambda: check_extend(ref, "extend_attention_fwd", "_fwd_kernel", "extend"), results)
        _check(
            "dense_prefill",
            lambda: check_extend(
                ref, "dense_prefill_attention_fwd", "_fwd_kernel_dense_prefill", "dense_prefill"
            ),
            results,
        )
        _check("matmul_invariance", lambda: check_matmul(ref), results)
        ref()
        _check("overhead", bench_overhead, results)
        png = (
            plot_overhead(results["overhead"], out / "safety_overhead.png")
            if "rows" in results["overhead"]
            else None
        )
        results["overhead"]["png"] = str(png) if png else "matplotlib missing: --plot safety_check.json later"
        _check("cuda_graph", check_cuda_graph, results)  # last: a failed capture must not disturb the others
        results["longtail"] = _merge_longtail(out, {g: _wait(p, 300) for g, p in longtail.items()})
        from sglang_consumer_gpu.safety import state

        results["doctor"] = state.lines()
    results["pass"] = {name: bool(results.get(name, {}).get("pass")) for name in CHECKS}
    results["all_pass"] = all(results["pass"].values())
    results["seconds"] = round(time.time() - t0, 1)
    return results


def dry_run(cap: int) -> dict[str, Any]:
    """Without a GPU: every check's seeded inputs built twice on the CPU (the capped and the
    uncapped process must build the same ones) and the float32 references of the MoE and
    extend checks, on the checks' own shapes. Nothing is launched."""
    torch = _torch()
    doc: dict[str, Any] = {"dry_run": True, "cap": cap, "checks": list(CHECKS), "sglang": sglang_version()}
    moe = [moe_layer(1, device="cpu") for _ in range(2)]
    ref = moe[0].up_reference(0)
    doc["moe"] = {
        "case": MOE_CASE.label,
        "same_inputs": _hash(moe[0].w1[0]) == _hash(moe[1].w1[0])
        and _hash(moe[0].slots[0].x) == _hash(moe[1].slots[0].x)
        and bool(torch.equal(moe[0].slots[0].topk_ids, moe[1].slots[0].topk_ids)),
        "reference_shape": list(ref.shape),
        "reference_finite": bool(ref.isfinite().all()),
    }
    for key, prefix in (("extend", True), ("dense_prefill", False)):
        runs = [extend_run(2, prefix=prefix, device="cpu") for _ in range(2)]
        ref = runs[0].reference(0)
        doc[key] = {
            "case": runs[0].case.label,
            "same_inputs": _hash(runs[0].slots[0].q) == _hash(runs[1].slots[0].q),
            "reference_shape": list(ref.shape),
            "reference_finite": bool(ref.isfinite().all()),
        }
    x = [matmul_inputs(4, device="cpu") for _ in range(2)]
    doc["matmul_invariance"] = {"batches": list(MATMUL_BATCHES), "same_inputs": _hash(x[0][0]) == _hash(x[1][0])}
    doc["ok"] = all(v.get("same_inputs") and v.get("reference_finite", True)
                    for v in doc.values() if isinstance(v, dict))  # fmt: skip
    return doc


def part_longtail(out: Path, cap: int, group: str) -> dict[str, Any]:
    from scripts import longtail_sweep

    apply_cap(cap)
    with plugin_for_cap(cap):
        return longtail_sweep.sweep_device((group,))


def _merge_longtail(out: Path, codes: dict[str, int | None]) -> dict[str, Any]:
    """The long-tail groups' results in one ``longtail_device.json``; the summary for the main JSON."""
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"exit_codes": codes}
    for group in LONGTAIL_GROUPS:
        path = out / f"longtail_device_{group}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            rows += doc.get("rows", [])
            summary[f"seconds_{group}"] = doc.get("seconds")
    for key in ("native", "fitted", "smem_failure", "error"):
        summary[key] = sum(r.get("outcome") == key for r in rows)
    summary["total"] = len(rows)
    summary["failed"] = summary.pop("smem_failure")
    summary["errors"] = [f"{r['case']}: {r.get('error')}" for r in rows if r.get("outcome") == "error"]
    summary["fitted_cases"] = [
        f"{r['case']}: {iv['kernel']} {iv['before']} -> {iv['after']}"
        for r in rows
        for iv in r["interventions"]
    ]
    (out / "longtail_device.json").write_text(json.dumps({**summary, "rows": rows}, indent=1, default=str))
    summary["pass"] = summary["failed"] == 0 and summary["total"] > 0 and all(c == 0 for c in codes.values())
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results")))
    ap.add_argument("--cap", type=int, default=int(os.environ.get(EMULATE_ENV) or DEFAULT_CAP))
    ap.add_argument("--part", choices=("main", "reference", "longtail"), default="main")
    ap.add_argument("--group", default="bio", help="--part longtail: which case group")
    ap.add_argument(
        "--plot", type=Path, help="only draw safety_overhead.png from an existing safety_check.json"
    )
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: build every check's inputs and the float32 references on the CPU, print them as JSON")  # fmt: skip
    args = ap.parse_args()
    if args.dry_run:
        doc = dry_run(args.cap)
        print(json.dumps(doc))
        return 0 if doc["ok"] else 1
    if args.plot:
        doc = json.loads(args.plot.read_text())
        print(plot_overhead(doc["overhead"], args.plot.with_name("safety_overhead.png")))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "reference":
        doc, name = part_reference(args.out), "reference.json"
    elif args.part == "longtail":
        doc, name = part_longtail(args.out, args.cap, args.group), f"longtail_device_{args.group}.json"
    else:
        doc, name = part_main(args.out, args.cap), "safety_check.json"
    tmp = args.out / f".{name}.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(args.out / name)
    if args.part == "main":
        print(json.dumps({"pass": doc["pass"], "all_pass": doc["all_pass"], "seconds": doc["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
