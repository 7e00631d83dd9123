"""Device check of the weight-only FP8 fused MoE (issue 23, part 2): correctness, speed, end to end.

Run on the device machine with the carried SGLang 0.5.17 installed and the working tree on PYTHONPATH:

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1; export PYTHONPATH=$PWD:$PYTHONPATH
    PYTHONUNBUFFERED=1 python3 scripts/device/fp8_moe_check.py --out $OUT --sections correctness,speed --budget-s 340

Every section runs in fresh child processes (this script with ``--child``), so an emulation's
environment is the child's alone; a child that fails records its error and the others go on.
``fp8_moe_check.json`` is rewritten after each child, ``fp8_moe_speed.png`` drawn after the speed
section. ``--budget-s`` is the whole run's wall clock: each child gets a share of what is left
(by :data:`WEIGHTS`), starts no case past it (the JSON counts those as ``not_run``) and is killed
45 s after it. ``--smoke`` checks the script itself on a CPU: Triton's interpreter, a tiny layer,
fp16 only (Triton 3.8's interpreter multiplies bf16 bit patterns as integers, see
``tests/test_fp8_moe.py``), the plugin's launcher and SGLang's bf16 launcher called once each
instead of timed; no emulation, no e2e.

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
#: Each child's share of the budget left when it starts (e2e: three servers and a model build).
WEIGHTS = {"correct_3090": 3.0, "correct_native": 1.5, "unpatched": 1.0, "speed_3090": 3.0, "speed_4090": 3.0, "e2e": 10.0}
#: Seconds a child may run past its share before it is killed (imports, the case in flight, the JSON).
GRACE_S = 45
#: (name, E, N per GPU, K, top-k): Qwen3-30B-A3B, Qwen3-235B-A22B at TP4, DeepSeek-V3 at TP8.
LAYERS: tuple[tuple[str, int, int, int, int], ...] = (
    ("Qwen3-30B-A3B", 128, 768, 2048, 8),
    ("Qwen3-235B-A22B TP4", 128, 384, 4096, 8),
    ("DeepSeek-V3 TP8", 256, 256, 7168, 8),
)
SCHEMES = ("block", "channel", "tensor")
CORRECTNESS_M = (1, 5, 64, 256, 1024, 4096)
SPEED_M = (1, 8, 64, 256, 1024, 4096)
SMOKE_LAYER = ("smoke", 8, 128, 256, 2)
SMOKE_M = (1, 5)
SMOKE_MODES = "plugin_fp8_direct,sglang_bf16"


# ----------------------------------------------------------------------------- children


def _device(args: argparse.Namespace) -> str:
    return "cpu" if args.smoke else "cuda"


def _layers(args: argparse.Namespace) -> tuple[tuple[str, int, int, int, int], ...]:
    return (SMOKE_LAYER,) if args.smoke else LAYERS[: args.layers]


def _in_time(args: argparse.Namespace) -> bool:
    """May the child start another case (``--until``: the epoch second its share ends; 0: no limit)?"""
    return not args.until or time.time() < args.until


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _shape(E: int, N: int, K: int, topk: int, scheme: str) -> Any:
    from sglang_consumer_gpu.moe.shape import MoeShape

    return MoeShape(E, N, K, topk, "fp8_w8a8", (128, 128) if scheme == "block" else None, scheme == "channel")


def _plan(shape: Any, M: int) -> Any:
    """The RTX 3090 plan for the layer (what the patched launcher runs on one)."""
    from sglang_consumer_gpu.families import fp8 as fp8_family
    from sglang_consumer_gpu.hardware import find_gpu

    return fp8_family.plugin_choice(find_gpu(RTX_3090), shape, M)


def _layer_check(shape: Any, M: int, act: str, via_sglang: bool, device: str) -> dict[str, Any]:
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
                       idle=1, device=device, seed=M)  # fmt: skip
    al = align(layer.topk_ids, bm, shape.E)
    if via_sglang:
        gemm = fp8_family.sglang_gemm(pick.asked)
    else:
        gemm = functools.partial(fused_moe_weight_only, config=pick.config)
    run = run_layer(layer, (al.sorted_ids, al.expert_ids, al.num_post), bm, gemm)
    _sync(device)
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

    device = _device(args)
    spec = current_spec()
    via_sglang = bool(os.environ.get(EMULATE))
    out: dict[str, Any] = {"spec": spec.to_dict() if spec else None, "via": "sglang launcher" if via_sglang else "plugin launcher",
                           "override_arch": os.environ.get("TRITON_OVERRIDE_ARCH"), "decode": {}, "cases": [], "not_run": 0}  # fmt: skip
    acts = ("float16",) if args.smoke else ("bfloat16", "float16")
    codes = torch.arange(256, dtype=torch.uint8, device=device)
    want = codes.view(torch.float8_e4m3fn).float()
    for act in acts:
        got = decode_e4m3(codes, getattr(torch, act)).float()
        same = ((got == want) & (torch.signbit(got) == torch.signbit(want))) | (got.isnan() & want.isnan())
        out["decode"][act] = [int(c) for c in codes[~same].tolist()]
    # Batch sizes outermost: a run cut short by its budget has every layout at the small ones.
    for M in SMOKE_M if args.smoke else CORRECTNESS_M:
        for name, E, N, K, topk in _layers(args):
            for scheme in SCHEMES:
                for act in acts:
                    if not _in_time(args):
                        out["not_run"] += 1
                        continue
                    row: dict[str, Any] = {"model": name, "scheme": scheme, "act": act, "M": M}
                    try:
                        row.update(_layer_check(_shape(E, N, K, topk, scheme), M, act, via_sglang, device))
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
    layer = make_layer(shape.E, shape.N, shape.K, shape.topk, 64, "block", device=_device(args))
    al = align(layer.topk_ids, pick.config["BLOCK_SIZE_M"], shape.E)
    try:
        run_layer(
            layer,
            (al.sorted_ids, al.expert_ids, al.num_post),
            pick.config["BLOCK_SIZE_M"],
            fp8_family.sglang_gemm(pick.asked),
        )
        _sync(_device(args))
        return {"raised": None}
    except Exception as exc:
        return {"raised": f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"}


def _candidates(shape: Any, M: int, slots: int, modes: tuple[str, ...], device: str) -> dict[str, Any]:
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
    layers = [make_layer(shape.E, shape.N, shape.K, shape.topk, M, fp8_family.scheme(shape), device=device, seed=i)
              for i in range(slots)]  # fmt: skip
    base = layers[0]
    w1_16, w2_16 = base.dequantized(True).to(torch.bfloat16), base.dequantized(False).to(torch.bfloat16)
    pick = _plan(shape, M)
    bf16_cfg = moe_family.plugin_choice(
        find_gpu(RTX_3090), MoeShape(shape.E, shape.N, shape.K, shape.topk), M
    ).up
    fp8_cfg = moe_family.plugin_choice(find_gpu(RTX_4090), shape, M).up  # SGLang's kernel as a 4090 runs it
    c1 = torch.empty(M * shape.topk, 2 * shape.N, device=device, dtype=torch.bfloat16)
    a2 = torch.randn(M * shape.topk, shape.N, device=device).to(torch.bfloat16)
    c2 = torch.empty(M, shape.topk, shape.K, device=device, dtype=torch.bfloat16)
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
    """Each mode on each (layer, scale layout, M), timed interleaved; ``--smoke``: each called once."""
    from sglang_consumer_gpu.measure.timer import Timer, device_l2, rotation_slots

    device = _device(args)
    modes = tuple(args.modes.split(","))
    timer = Timer(rounds=args.rounds)
    out: dict[str, Any] = {"emulate": os.environ.get(EMULATE), "modes": modes, "points": [], "not_run": 0}
    for M in SMOKE_M if args.smoke else SPEED_M:
        for name, E, N, K, topk in _layers(args):
            for scheme in ("block", "tensor"):
                if not _in_time(args):
                    out["not_run"] += 1
                    continue
                shape = _shape(E, N, K, topk, scheme)
                point: dict[str, Any] = {"model": name, "scheme": scheme, "M": M}
                try:
                    touched = min(E, M * topk) * 3 * N * K  # fp8 weight bytes one call reads
                    slots = 1 if args.smoke else rotation_slots(touched, device_l2("cuda"), limit=8)
                    fns = _candidates(shape, M, slots, modes, device)
                    point["configs"] = {m: cfg for m, (_, cfg) in fns.items()}
                    if args.smoke:
                        for fn, _ in fns.values():
                            fn(0)
                        point["ran"] = list(fns)
                    else:
                        times = timer.compare({m: fn for m, (fn, _) in fns.items()}, slots)
                        point["us"] = {m: round(t.us, 2) for m, t in times.items()}
                        first = modes[0]
                        point["ratio_vs_" + first] = {m: round(times[first].us / t.us, 3) for m, t in times.items()}
                except Exception as exc:
                    point["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
                out["points"].append(point)
                print(json.dumps(point), file=sys.stderr, flush=True)
    return out


CHILDREN = {"correctness": child_correctness, "unpatched": child_unpatched, "speed": child_speed}


# ----------------------------------------------------------------------------- parent


class Budget:
    """The run's wall clock: each child's share of what is left, by :data:`WEIGHTS`."""

    def __init__(self, seconds: float, keys: list[str]) -> None:
        self.deadline = time.time() + seconds
        self.pending = list(keys)

    def share(self, key: str) -> float:
        """The epoch second child ``key`` must stop starting cases at."""
        left = max(self.deadline - time.time(), 0.0)
        weight = sum(WEIGHTS[k] for k in self.pending)
        self.pending.remove(key)
        return time.time() + left * WEIGHTS[key] / weight


def child(name: str, env: dict[str, str], extra: list[str], until: float) -> Any:
    """Run one child of this script in a fresh interpreter (its environment: ``env``) until ``until``."""
    argv = [sys.executable, __file__, "--child", name, "--until", f"{until:.0f}", *extra]
    return run_json(argv, env, max(int(until - time.time()) + GRACE_S, GRACE_S), stderr_chars=3000)


def e2e(args: argparse.Namespace, until: float) -> dict[str, Any]:
    """The FP8 model and its twin, then run_e2e's stages under the RTX 3090 emulation."""
    fp8, twin = Path(args.work) / "qwen3moe-fp8", Path(args.work) / "qwen3moe-fp8-bf16twin"
    left = max(int(until - time.time()), 60)
    made = subprocess.run([sys.executable, str(REPO / "scripts/e2e/make_model.py"), "--out", str(fp8), "--twin", str(twin),
                           "--fp8", "block", "--layers", "4"], capture_output=True, text=True, timeout=left)  # fmt: skip
    result: dict[str, Any] = {
        "make_model": {"rc": made.returncode, "stdout": made.stdout[-800:], "stderr": made.stderr[-1500:]}
    }
    if made.returncode:
        return result
    left = max(int(until - time.time()), 60)
    try:
        run = subprocess.run(
            [sys.executable, str(REPO / "scripts/e2e/run_e2e.py"), "--out", str(args.out / "e2e"), "--work", str(Path(args.work) / "e2e"),
             "--model", str(fp8), "--reference-model", str(twin), "--emulate-gpu", RTX_3090,
             "--stages", "unpatched,plugin,reference,compare", "--server-timeout", str(min(left, 300))],
            capture_output=True, text=True, timeout=left + GRACE_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        result["run_e2e"] = {"error": f"timed out after {left + GRACE_S} s (partial results in {args.out / 'e2e'})"}
        return result
    result["run_e2e"] = {"rc": run.returncode, "stdout": run.stdout[-3000:], "stderr": run.stderr[-1500:]}
    return result


def plot_speed(speed: dict[str, Any], path: Path) -> str:
    """Each emulation's ratios (its first mode's time / each other mode's) against M, one line per
    layer, scale layout and mode; returns what happened (a file name or why there is none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot: {exc}"
    runs = {k: v for k, v in speed.items() if isinstance(v, dict) and v.get("points")}
    timed = {k: [p for p in v["points"] if "us" in p] for k, v in runs.items()}
    timed = {k: v for k, v in timed.items() if v}
    if not timed:
        return "no plot: nothing was timed"
    fig, axes = plt.subplots(1, len(timed), figsize=(6.5 * len(timed), 4.5), squeeze=False)
    for ax, (key, points) in zip(axes[0], timed.items(), strict=True):
        first = runs[key]["modes"][0]
        lines: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for p in points:
            for mode, ratio in p[f"ratio_vs_{first}"].items():
                if mode != first:
                    lines.setdefault((p["model"], p["scheme"], mode), []).append((p["M"], ratio))
        for (model, scheme, mode), xy in sorted(lines.items()):
            xs, ys = zip(*sorted(xy), strict=True)
            ax.plot(xs, ys, marker="o", label=f"{mode}, {model} {scheme}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel(f"time of {first} / time of the mode (>1: the mode is faster)")
        ax.set_title(f"{key} (H100/H200 timings of emulated code)", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="results directory (required unless --child)")
    ap.add_argument("--sections", default="correctness,speed", help=f"comma-separated, of {', '.join(SECTIONS)}")
    ap.add_argument(
        "--layers", type=int, default=len(LAYERS), help="how many of LAYERS to run (1: Qwen3-30B-A3B only)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (speed)")
    ap.add_argument("--budget-s", type=float, default=340.0, help="the whole run's wall clock (see the docstring)")
    ap.add_argument("--smoke", action="store_true", help="check the script on a CPU (see the docstring)")
    ap.add_argument("--work", default="/tmp/fp8_moe_check", help="models and e2e logs")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--modes", default="", help=argparse.SUPPRESS)
    ap.add_argument("--until", type=float, default=0.0, help=argparse.SUPPRESS)
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

    common = ["--layers", str(args.layers), "--rounds", str(args.rounds), *(["--smoke"] if args.smoke else [])]
    if args.smoke:  # one CPU child per section, no emulation (it needs a GPU), no e2e
        interp = {"TRITON_INTERPRET": "1"}
        budget = Budget(args.budget_s, [k for k, sec in (("correct_native", "correctness"), ("speed_3090", "speed")) if sec in want])
        if "correctness" in want:
            doc["correctness"] = {"cpu_interpreter": child("correctness", interp, common, budget.share("correct_native"))}
            save()
        if "speed" in want:
            doc["speed"] = {"cpu_interpreter": child("speed", interp, [*common, "--modes", SMOKE_MODES], budget.share("speed_3090"))}
            save()
        if "e2e" in want:
            doc["e2e"] = {"skipped": "--smoke: the served model needs a GPU"}
            save()
        print(f"[fp8_moe_check] wrote {path}", flush=True)
        return 0
    keys = [*(("correct_3090", "correct_native", "unpatched") if "correctness" in want else ()),
            *(("speed_3090", "speed_4090") if "speed" in want else ()), *(("e2e",) if "e2e" in want else ())]  # fmt: skip
    budget = Budget(args.budget_s, keys)
    if "correctness" in want:
        doc["correctness"] = {
            "rtx3090_emulated_via_sglang": child("correctness", {EMULATE: RTX_3090}, common, budget.share("correct_3090")),
            "native_via_plugin_launcher": child("correctness", {}, common, budget.share("correct_native")),
        }  # fmt: skip
        save()
        doc["correctness"]["rtx3090_emulated_unpatched"] = child(
            "unpatched", {EMULATE: RTX_3090, "SGLANG_CONSUMER_GPU": "0"}, common, budget.share("unpatched")
        )
        save()
    if "speed" in want:
        doc["speed"] = {
            "rtx3090_emulated": child("speed", {EMULATE: RTX_3090}, [*common, "--modes", "plugin_fp8_via_sglang,sglang_bf16"],
                                      budget.share("speed_3090")),
            "rtx4090_emulated": child("speed", {EMULATE: RTX_4090},
                                      [*common, "--modes", "sglang_fp8_w8a8,plugin_fp8_direct,sglang_bf16"], budget.share("speed_4090")),
        }  # fmt: skip
        save()
        try:
            doc["speed"]["plot"] = plot_speed(doc["speed"], args.out / "fp8_moe_speed.png")
        except Exception as exc:  # the timings are saved; a plot that fails says why next to them
            doc["speed"]["plot"] = f"no plot: {type(exc).__name__}: {exc}"
        save()
    if "e2e" in want:
        doc["e2e"] = e2e(args, budget.share("e2e"))
        save()
    print(f"[fp8_moe_check] wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
