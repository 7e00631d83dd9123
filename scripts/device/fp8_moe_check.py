"""Device check of the weight-only FP8 fused MoE (issue 23, part 2): correctness, speed, end to end.

Run on the device machine with the carried SGLang 0.5.17 installed and the working tree on PYTHONPATH:

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1; export PYTHONPATH=$PWD:$PYTHONPATH
    PYTHONUNBUFFERED=1 python3 scripts/device/fp8_moe_check.py --out $OUT [--sections correctness,speed,e2e]

Every section runs in fresh child processes (this script with ``--child``), so an emulation's
environment is the child's alone; a child that fails records its error and the others go on.
``fp8_moe_check.json`` is rewritten after each child.

- ``correctness``: all 256 e4m3 codes through the kernel's decoder (exact), then the layer
  (:data:`LAYERS` x block / per-channel / per-tensor scales x bf16/fp16 x :data:`CORRECTNESS_M`,
  one expert without tokens, subnormal codes) against the float32 references of
  ``sglang_consumer_gpu.fp8.layer``, with the bounds the selftest uses: under the RTX 3090
  arch-faithful emulation through SGLang's own launcher (patched: sm_86 code generation, the
  route the plugin takes there), and natively through the plugin's launcher (sm_90 code). Plus,
  under the RTX 3090 emulation with the plugin off, SGLang's own launcher on an fp8 layer: the
  error it raises (``type fp8e4nv not supported``).
- ``speed``: both GEMMs of a layer under CUDA graphs with rotated routing, timed interleaved
  (``measure.timer.Timer.compare``) in one process per emulation; ratios within one process only:
  RTX 3090 emulation: the plugin's fp8 path (through SGLang's patched launcher) vs SGLang's bf16
  kernel with the plugin's bf16 tile on the same layer's dequantized weights (what a user of the
  bf16 checkpoint runs); RTX 4090 emulation: SGLang's fp8_w8a8 kernel (the tile an RTX 4090 gets
  with the plugin, SGLang's own activation quantization included) vs the plugin's weight-only
  kernel (the RTX 3090 plan, sm_89 code) vs bf16. H100/H200 timings of sm_86/sm_89 code, not RTX 3090/4090 figures.
- ``e2e``: a random-weight block-FP8 Qwen3-MoE at Qwen3-30B-A3B widths and its dequantized bf16
  twin (scripts/e2e/make_model.py ``--fp8 block --twin``), then scripts/e2e/run_e2e.py under the
  RTX 3090 emulation: unpatched (where SGLang fails), with the plugin (serves), the bf16 twin
  without emulation or plugin (reference), logprobs compared against run_e2e's bound. Its
  results are in ``$OUT/e2e/e2e_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scripts.device.json_child import run_json

REPO = Path(__file__).resolve().parents[2]
RTX_3090 = "NVIDIA GeForce RTX 3090"
RTX_4090 = "NVIDIA GeForce RTX 4090"
EMULATE = "SGLANG_CONSUMER_GPU_EMULATE_GPU"
SECTIONS = ("correctness", "speed", "e2e")
#: (name, E, N per GPU, K, top-k): Qwen3-30B-A3B, Qwen3-235B-A22B at TP4, DeepSeek-V3 at TP8.
LAYERS: tuple[tuple[str, int, int, int, int], ...] = (
    ("Qwen3-30B-A3B", 128, 768, 2048, 8),
    ("Qwen3-235B-A22B TP4", 128, 384, 4096, 8),
    ("DeepSeek-V3 TP8", 256, 256, 7168, 8),
)
SCHEMES = ("block", "channel", "tensor")
CORRECTNESS_M = (1, 5, 64, 256, 1024, 4096)
SPEED_M = (1, 8, 64, 256, 1024, 4096)
DEVICE = "cuda"


# ----------------------------------------------------------------------------- children


def _sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _shape(E: int, N: int, K: int, topk: int, scheme: str) -> Any:
    from sglang_consumer_gpu.moe.shape import MoeShape

    return MoeShape(E, N, K, topk, "fp8_w8a8", (128, 128) if scheme == "block" else None, scheme == "channel")


def _plan(shape: Any, M: int) -> Any:
    """The RTX 3090 plan for the layer (what the patched launcher runs on one)."""
    from sglang_consumer_gpu.families import fp8 as fp8_family
    from sglang_consumer_gpu.hardware import find_gpu

    return fp8_family.plugin_choice(find_gpu(RTX_3090), shape, M)


def _layer_check(shape: Any, M: int, act: str, via_sglang: bool) -> dict[str, Any]:
    import functools

    import torch

    from sglang_consumer_gpu.families import fp8 as fp8_family
    from sglang_consumer_gpu.fp8.layer import (
        make_layer,
        reference_gemms,
        reference_layer,
        row_error,
        run_layer,
    )
    from sglang_consumer_gpu.fp8.ops import fused_moe_weight_only
    from sglang_consumer_gpu.measure.moe import MoeCase, align, error_bound

    pick = _plan(shape, M)
    bm = pick.config["BLOCK_SIZE_M"]
    layer = make_layer(shape.E, shape.N, shape.K, shape.topk, M, fp8_family.scheme(shape), getattr(torch, act),
                       idle=1, device=DEVICE, seed=M)  # fmt: skip
    al = align(layer.topk_ids, bm, shape.E)
    if via_sglang:
        gemm = fp8_family.sglang_gemm(pick.asked)
    else:
        gemm = functools.partial(fused_moe_weight_only, config=pick.config)
    run = run_layer(layer, (al.sorted_ids, al.expert_ids, al.num_post), bm, gemm)
    _sync()
    ref1, ref2 = reference_gemms(layer, run.a2)
    gemm_bound, layer_bound = error_bound(MoeCase(shape, M, act)), fp8_family.layer_bound(act)
    errs = {
        "up": row_error(run.c1, ref1),
        "down": row_error(run.c2, ref2),
        "layer": row_error(run.out, reference_layer(layer)),
    }
    ok = errs["up"] <= gemm_bound and errs["down"] <= gemm_bound and errs["layer"] <= layer_bound
    return {
        "ok": ok,
        **errs,
        "gemm_bound": gemm_bound,
        "layer_bound": layer_bound,
        "tile": pick.config,
        "align": al.path,
    }


def child_correctness(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from sglang_consumer_gpu.fp8.ops import decode_e4m3
    from sglang_consumer_gpu.hardware import current_spec
    from sglang_consumer_gpu.patching import registry

    spec = current_spec()
    via_sglang = bool(os.environ.get(EMULATE))
    out: dict[str, Any] = {"spec": spec.to_dict() if spec else None, "via": "sglang launcher" if via_sglang else "plugin launcher",
                           "override_arch": os.environ.get("TRITON_OVERRIDE_ARCH"), "decode": {}, "cases": []}  # fmt: skip
    codes = torch.arange(256, dtype=torch.uint8, device=DEVICE)
    want = codes.view(torch.float8_e4m3fn).float()
    for act in ("bfloat16", "float16"):
        got = decode_e4m3(codes, getattr(torch, act)).float()
        same = ((got == want) & (torch.signbit(got) == torch.signbit(want))) | (got.isnan() & want.isnan())
        out["decode"][act] = [int(c) for c in codes[~same].tolist()]
    for name, E, N, K, topk in LAYERS[: args.layers]:
        for scheme in SCHEMES:
            for act in ("bfloat16", "float16"):
                for M in CORRECTNESS_M:
                    row: dict[str, Any] = {"model": name, "scheme": scheme, "act": act, "M": M}
                    try:
                        row.update(_layer_check(_shape(E, N, K, topk, scheme), M, act, via_sglang))
                    except Exception as exc:
                        row.update(
                            ok=False, error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
                        )
                    out["cases"].append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    out["patches"] = {k: v.to_dict() for k, v in registry.results().items()}
    out["passed"] = sum(bool(c.get("ok")) for c in out["cases"])
    out["failed"] = len(out["cases"]) - out["passed"]
    return out


def child_unpatched(args: argparse.Namespace) -> dict[str, Any]:
    """SGLang's own launcher on one fp8 GEMM (the plugin off): what it raises."""

    from sglang_consumer_gpu.families import fp8 as fp8_family
    from sglang_consumer_gpu.fp8.layer import make_layer, run_layer
    from sglang_consumer_gpu.measure.moe import align

    shape = _shape(*LAYERS[0][1:], "block")
    pick = _plan(shape, 64)
    layer = make_layer(shape.E, shape.N, shape.K, shape.topk, 64, "block", device=DEVICE)
    al = align(layer.topk_ids, pick.config["BLOCK_SIZE_M"], shape.E)
    try:
        run_layer(
            layer,
            (al.sorted_ids, al.expert_ids, al.num_post),
            pick.config["BLOCK_SIZE_M"],
            fp8_family.sglang_gemm(pick.asked),
        )
        _sync()
        return {"raised": None}
    except Exception as exc:
        return {"raised": f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"}


def _candidates(shape: Any, M: int, slots: int, modes: tuple[str, ...]) -> dict[str, Any]:
    """``fn(i)`` per mode: both GEMMs of the layer on routing set ``i``."""
    import torch
    import triton.language as tl

    from sglang_consumer_gpu.families import fp8 as fp8_family
    from sglang_consumer_gpu.families import moe as moe_family
    from sglang_consumer_gpu.fp8.layer import make_layer
    from sglang_consumer_gpu.fp8.ops import fused_moe_weight_only
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.moe import align, kernels
    from sglang_consumer_gpu.moe.shape import MoeShape

    fk = kernels()
    layers = [make_layer(shape.E, shape.N, shape.K, shape.topk, M, fp8_family.scheme(shape), device=DEVICE, seed=i)
              for i in range(slots)]  # fmt: skip
    base = layers[0]
    w1_16, w2_16 = base.dequantized(True).to(torch.bfloat16), base.dequantized(False).to(torch.bfloat16)
    pick = _plan(shape, M)
    bf16_cfg = moe_family.plugin_choice(
        find_gpu(RTX_3090), MoeShape(shape.E, shape.N, shape.K, shape.topk), M
    ).up
    fp8_cfg = moe_family.plugin_choice(find_gpu(RTX_4090), shape, M).up  # SGLang's kernel as a 4090 runs it
    c1 = torch.empty(M * shape.topk, 2 * shape.N, device=DEVICE, dtype=torch.bfloat16)
    a2 = torch.randn(M * shape.topk, shape.N, device=DEVICE).to(torch.bfloat16)
    c2 = torch.empty(M, shape.topk, shape.K, device=DEVICE, dtype=torch.bfloat16)
    aligned: dict[int, list[Any]] = {}

    def routing(bm: int) -> list[Any]:
        if bm not in aligned:
            aligned[bm] = [align(layer.topk_ids, bm, shape.E) for layer in layers]
        return aligned[bm]

    def sglang_call(w1: Any, s1: Any, w2: Any, s2: Any, cfg: dict[str, Any], fp8: bool) -> Any:
        als = routing(cfg["BLOCK_SIZE_M"])

        def fn(i: int) -> None:
            layer, al = layers[i % slots], als[i % slots]
            for A, B, S, C, up in ((layer.x, w1, s1, c1, True), (a2, w2, s2, c2, False)):
                fk.invoke_fused_moe_kernel(
                    A, B, None, C, None, S, None, layer.topk_weights, layer.topk_ids, al.sorted_ids, al.expert_ids,
                    al.num_post, not up, shape.topk if up else 1, dict(cfg), compute_type=tl.bfloat16,
                    use_fp8_w8a8=fp8, use_int8_w8a8=False, use_int8_w8a16=False, use_int4_w4a16=False,
                    per_channel_quant=shape.per_channel_quant and fp8, block_shape=base.block_shape if fp8 else None,
                )  # fmt: skip

        return fn

    def plugin_direct(i: int) -> None:
        layer, al = layers[i % slots], routing(pick.config["BLOCK_SIZE_M"])[i % slots]
        for A, B, S, C, up in ((layer.x, base.w1, base.s1, c1, True), (a2, base.w2, base.s2, c2, False)):
            fused_moe_weight_only(A, B, C, S, layer.topk_weights, layer.topk_ids, al.sorted_ids, al.expert_ids,
                                  al.num_post, mul_routed_weight=not up, top_k=shape.topk if up else 1,
                                  block_m=pick.config["BLOCK_SIZE_M"], block_shape=base.block_shape,
                                  per_channel_quant=shape.per_channel_quant, config=pick.config)  # fmt: skip

    table = {
        "plugin_fp8_via_sglang": lambda: sglang_call(base.w1, base.s1, base.w2, base.s2, pick.asked, True),
        "plugin_fp8_direct": lambda: plugin_direct,
        "sglang_bf16": lambda: sglang_call(w1_16, None, w2_16, None, bf16_cfg, False),
        "sglang_fp8_w8a8": lambda: sglang_call(base.w1, base.s1, base.w2, base.s2, fp8_cfg, True),
    }
    configs = {"plugin_fp8_via_sglang": pick.config, "plugin_fp8_direct": pick.config, "sglang_bf16": bf16_cfg,
               "sglang_fp8_w8a8": fp8_cfg}  # fmt: skip
    return {m: (table[m](), configs[m]) for m in modes}


def child_speed(args: argparse.Namespace) -> dict[str, Any]:
    from sglang_consumer_gpu.measure.timer import Timer, device_l2, rotation_slots

    modes = tuple(args.modes.split(","))
    timer = Timer(rounds=args.rounds)
    out: dict[str, Any] = {"emulate": os.environ.get(EMULATE), "modes": modes, "points": []}
    for name, E, N, K, topk in LAYERS[: args.layers]:
        for scheme in ("block", "tensor"):
            shape = _shape(E, N, K, topk, scheme)
            for M in SPEED_M:
                point: dict[str, Any] = {"model": name, "scheme": scheme, "M": M}
                try:
                    touched = min(E, M * topk) * 3 * N * K  # fp8 weight bytes one call reads
                    slots = rotation_slots(touched, device_l2("cuda"), limit=8)
                    fns = _candidates(shape, M, slots, modes)
                    times = timer.compare({m: fn for m, (fn, _) in fns.items()}, slots)
                    point["us"] = {m: round(t.us, 2) for m, t in times.items()}
                    point["configs"] = {m: cfg for m, (_, cfg) in fns.items()}
                    first = modes[0]
                    point["ratio_vs_" + first] = {
                        m: round(times[first].us / t.us, 3) for m, t in times.items()
                    }
                except Exception as exc:
                    point["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
                out["points"].append(point)
                print(json.dumps(point), file=sys.stderr, flush=True)
    return out


CHILDREN = {"correctness": child_correctness, "unpatched": child_unpatched, "speed": child_speed}


# ----------------------------------------------------------------------------- parent


def child(name: str, env: dict[str, str], extra: list[str], timeout: int) -> Any:
    """Run one child of this script in a fresh interpreter (its environment: ``env``)."""
    return run_json([sys.executable, __file__, "--child", name, *extra], env, timeout, stderr_chars=3000)


def e2e(args: argparse.Namespace) -> dict[str, Any]:
    """The FP8 model and its twin, then run_e2e's stages under the RTX 3090 emulation."""
    fp8, twin = Path(args.work) / "qwen3moe-fp8", Path(args.work) / "qwen3moe-fp8-bf16twin"
    made = subprocess.run([sys.executable, str(REPO / "scripts/e2e/make_model.py"), "--out", str(fp8), "--twin", str(twin),
                           "--fp8", "block", "--layers", "4"], capture_output=True, text=True, timeout=900)  # fmt: skip
    result: dict[str, Any] = {
        "make_model": {"rc": made.returncode, "stdout": made.stdout[-800:], "stderr": made.stderr[-1500:]}
    }
    if made.returncode:
        return result
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts/e2e/run_e2e.py"), "--out", str(args.out / "e2e"), "--work", str(Path(args.work) / "e2e"),
         "--model", str(fp8), "--reference-model", str(twin), "--emulate-gpu", RTX_3090,
         "--stages", "unpatched,plugin,reference,compare", "--server-timeout", "900"],
        capture_output=True, text=True, timeout=args.e2e_timeout,
    )  # fmt: skip
    result["run_e2e"] = {"rc": run.returncode, "stdout": run.stdout[-3000:], "stderr": run.stderr[-1500:]}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="results directory (required unless --child)")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument(
        "--layers", type=int, default=len(LAYERS), help="how many of LAYERS to run (1: Qwen3-30B-A3B only)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (speed)")
    ap.add_argument("--work", default="/tmp/fp8_moe_check", help="models and e2e logs")
    ap.add_argument("--e2e-timeout", type=int, default=3600)
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--modes", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    if args.out is None:
        ap.error("--out is required")
    want = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(want) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "fp8_moe_check.json"
    doc: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:]}

    def save() -> None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)

    common = ["--layers", str(args.layers), "--rounds", str(args.rounds)]
    if "correctness" in want:
        doc["correctness"] = {
            "rtx3090_emulated_via_sglang": child("correctness", {EMULATE: RTX_3090}, common, 3600),
            "native_via_plugin_launcher": child("correctness", {}, common, 3600),
        }
        save()
        doc["correctness"]["rtx3090_emulated_unpatched"] = child(
            "unpatched", {EMULATE: RTX_3090, "SGLANG_CONSUMER_GPU": "0"}, common, 900
        )
        save()
    if "speed" in want:
        doc["speed"] = {
            "rtx3090_emulated": child("speed", {EMULATE: RTX_3090}, [*common, "--modes", "plugin_fp8_via_sglang,sglang_bf16"], 3600),
            "rtx4090_emulated": child("speed", {EMULATE: RTX_4090},
                                      [*common, "--modes", "sglang_fp8_w8a8,plugin_fp8_direct,sglang_bf16"], 3600),
        }  # fmt: skip
        save()
    if "e2e" in want:
        doc["e2e"] = e2e(args)
        save()
    print(f"[fp8_moe_check] wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
