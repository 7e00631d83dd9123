"""``sglang-consumer-gpu moe-config``: which fused-MoE config each batch size gets.

For every batch size of the standard grid (1 .. 4096): the config SGLang runs
on the given GPU with the plugin (:func:`sglang_consumer_gpu.families.moe.plugin_choice`),
where it came from (user / bundled / sglang file, or heuristic; SGLang's own where
the plugin does not act) and its shared memory on that GPU's architecture: the
compile-only oracle's exact bytes where an earlier compile left them on disk, else
the analytic bound (``~``), in about a second; ``--oracle`` compiles what is missing
(seconds to a minute cold); ``--no-oracle``: the analytic bound only.
It names the config files SGLang asks for (int8_w8a8 without a block shape is
per-channel, as SGLang's w8a8_int8 method asks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.hardware import current_spec, find_gpu
from sglang_consumer_gpu.moe.shape import STANDARD_BATCH_GRID, MoeShape, dtype_label, parse_dtype
from sglang_consumer_gpu.moe.smem import estimate_shared


def register(sub: Any) -> None:
    p = sub.add_parser(
        "moe-config",
        help="show the fused-MoE config used per batch size, its source and its shared memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--E", type=int, help="number of experts")
    p.add_argument("--N", type=int, help="intermediate size per expert after TP (SGLang's N)")
    p.add_argument("--K", type=int, help="hidden size")
    p.add_argument("--topk", type=int, help="experts per token")
    p.add_argument("--dtype", default="bf16", help="bf16, fp16, fp8_w8a8, int8_w8a8 (default bf16)")
    p.add_argument("--block-shape", help="block quantization as BN,BK, e.g. 128,128")
    p.add_argument("--per-channel", action="store_true", help="per-channel quantized weights")
    p.add_argument(
        "--model",
        help="model directory, config.json, or Hugging Face id in the local HF cache (E/N/K/topk/dtype from it)",
    )
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size (with --model)")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel size (with --model; divides --tp)")
    p.add_argument("--gpu", help="GPU name (default: the live GPU or SGLANG_CONSUMER_GPU_VIRTUAL)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--oracle", action="store_true", help="compile every row the oracle has not measured yet")
    how.add_argument("--no-oracle", action="store_true", help="the analytic bound only (no oracle bytes)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _shape(args: argparse.Namespace) -> MoeShape:
    if args.model:
        from sglang_consumer_gpu.models import load_model, moe_shape

        return moe_family.as_sglang_asks(moe_shape(load_model(args.model), args.tp, args.ep))
    missing = [f"--{n}" for n in ("E", "N", "K", "topk") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"give --model PATH or all of --E --N --K --topk (missing {' '.join(missing)})")
    block = None
    if args.block_shape:
        try:
            bn, bk = (int(x) for x in args.block_shape.replace("[", "").replace("]", "").split(","))
        except ValueError:
            raise ValueError(
                f"--block-shape {args.block_shape!r}: expected two integers like 128,128"
            ) from None
        block = (bn, bk)
    shape = MoeShape(args.E, args.N, args.K, args.topk, parse_dtype(args.dtype), block, args.per_channel)
    return moe_family.as_sglang_asks(shape)


def _oracle(spec: Any, shape: MoeShape, M: int, config: dict[str, Any], mode: str) -> tuple[int | None, str]:
    """(bytes, how): ``mode`` "bound" asks nothing, "cached" reads an earlier compile's answer,
    "compile" also compiles what is missing."""
    if mode == "bound":
        return None, "skipped"
    try:
        from sglang_consumer_gpu.oracle.kernels.moe import cached_layer_shared, layer_shared

        cached = cached_layer_shared(spec, shape, M, config)
        if cached is not None:
            return cached, "oracle"
        if mode == "cached":
            return None, "not measured yet"
        return layer_shared(spec, shape, M, config), "oracle"
    except Exception as exc:
        return None, f"oracle unavailable: {type(exc).__name__}: {exc}"


def _row(spec: Any, shape: MoeShape, M: int, *, mode: str) -> dict[str, Any]:
    c = moe_family.plugin_choice(spec, shape, M)
    cfg = c.up
    est = estimate_shared(cfg, shape.dtype, shape.block_shape, spec.capability) if cfg else None
    shared, how = _oracle(spec, shape, M, cfg, mode) if cfg else (None, "skipped")
    return {
        "M": M,
        "config": cfg,
        "source": c.source,
        "path": c.path,
        "file_batch": c.file_batch,
        "serves_name_variant": c.because,
        "shared_estimate": est,
        "shared_oracle": shared,
        "oracle": how,
        "limit": spec.smem_per_block_optin,
        "fits": None if shared is None else shared <= spec.smem_per_block_optin,
    }


def run(args: argparse.Namespace) -> int:
    spec = find_gpu(args.gpu) if args.gpu else current_spec()
    if spec is None:
        raise ValueError("no GPU visible: pass --gpu NAME (e.g. --gpu 'NVIDIA GeForce RTX 4090')")
    shape = _shape(args)
    if shape.dtype == "fp8_w8a8" and not spec.supports_fp8_e4m3:
        from sglang_consumer_gpu.planner.constraints import fp8_moe_before_sm89

        raise ValueError(
            fp8_moe_before_sm89(spec) + ": moe-config answers for SGLang's kernels; the weight-only kernel's "
            "tiles are in doctor --model and check --only fp8-moe"
            if spec.is_ampere_or_newer
            else fp8_moe_before_sm89(spec) + "; on this GPU use the 16-bit or a 4-bit AWQ/GPTQ checkpoint"
        )
    rows = []
    worst_fail = False
    mode = "compile" if args.oracle else "bound" if args.no_oracle else "cached"
    with contextlib.ExitStack() as stack:
        if mode == "compile":  # one virtual GPU for every compile below (SGLang is imported once)
            from sglang_consumer_gpu.oracle.virtual import virtual_gpu

            with contextlib.suppress(Exception):  # no oracle here: each row says why
                stack.enter_context(virtual_gpu(spec))
        for M in STANDARD_BATCH_GRID:
            rows.append(_row(spec, shape, M, mode=mode))
            worst_fail |= rows[-1]["fits"] is False
    up_file, down_file = moe_family.file_names(spec, shape)
    if args.json:
        files = {"up": up_file, "down": down_file}
        print(json.dumps({"gpu": spec.to_dict(), "shape": shape.label, "sglang_asks_for": files, "rows": rows}, indent=1))
    else:
        print(f"{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin} B shared/block), {shape.label}")
        print(f"SGLang asks for {up_file} (down GEMM: {down_file})")
        note = moe_family.variant_note(spec, shape)
        if note:
            print(f"  {note}")
        print(
            f"{'M':>5}  {'BM':>3} {'BN':>3} {'BK':>3} {'G':>2} {'w':>1} {'s':>1}  {'shared':>7}  {'fits':>4}  source"
        )
        for r in rows:
            cfg = r["config"]
            cols = [cfg.get(k, "-") for k in ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M")]
            w, s = cfg.get("num_warps", "-"), cfg.get("num_stages", "-")
            shared = r["shared_oracle"] if r["shared_oracle"] is not None else f"~{r['shared_estimate']}"
            fits = {True: "yes", False: "NO", None: "?"}[r["fits"]]
            src = r["source"] + (f" {r['path']}" if r["path"] else "")
            print(
                f"{r['M']:>5}  {cols[0]:>3} {cols[1]:>3} {cols[2]:>3} {cols[3]:>2} {w:>1} {s:>1}  "
                f"{shared!s:>7}  {fits:>4}  {src}"
            )
        unmeasured = [r for r in rows if r["oracle"] == "not measured yet"]
        if unmeasured:
            print(f"(~: the analytic bound, an upper bound; the oracle has not measured {len(unmeasured)} of "
                  f"{len(rows)} rows on this machine yet: --oracle compiles them, then they answer from its cache)")  # fmt: skip
        failed = next((r["oracle"] for r in rows if r["oracle"].startswith("oracle unavailable")), None)
        if failed:
            print(f"(shared memory is the analytic bound: {failed})")
        print(f"dtype {dtype_label(shape.dtype)}; shared in bytes for one block on {spec.arch_name}")
    return 1 if worst_fail else 0
