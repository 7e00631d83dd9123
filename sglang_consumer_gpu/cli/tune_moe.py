"""``sglang-consumer-gpu tune-moe``: tune SGLang's fused-MoE kernel for a model on this GPU.

Writes SGLang's config file(s) into the directory the plugin's lookup reads first (the user
directory, under the installed Triton's triton_X_Y_Z/), so the next `launch_server` uses them
with no copying. What it searches and why: docs/moe.md, "tune-moe".

    sglang-consumer-gpu tune-moe --model Qwen/Qwen3-30B-A3B-FP8 --tp 1
    sglang-consumer-gpu tune-moe --model /models/Qwen3-30B-A3B --tp 2 --dtype bf16 fp8_w8a8
    sglang-consumer-gpu tune-moe --E 128 --N 768 --K 2048 --topk 8 --dtype fp8_w8a8

Interrupt it at any time: the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.moe.shape import MoeShape, parse_dtype

#: dtypes tune-moe times (they run SGLang's fused_moe_kernel); fp16 and bf16 share SGLang's file.
TUNABLE = ("bf16", "fp16", "fp8_w8a8", "int8_w8a8")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tune-moe",
        help="tune SGLang's fused-MoE kernel for a model on this GPU (minutes) and install the config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="model directory, config.json, or Hugging Face id in the local HF cache")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size (default 1)")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel size (divides --tp; default 1)")
    p.add_argument("--E", type=int, help="number of experts (instead of --model)")
    p.add_argument("--N", type=int, help="intermediate size per expert after TP (SGLang's N)")
    p.add_argument("--K", type=int, help="hidden size")
    p.add_argument("--topk", type=int, help="experts per token")
    p.add_argument("--block-shape", help="block quantization BN,BK for fp8/int8, e.g. 128,128")
    p.add_argument("--per-channel", action="store_true", help="per-channel quantized fp8 weights")
    p.add_argument("--dtype", nargs="+", default=["auto"], metavar="DTYPE",
                   help="auto (the model's; bf16 without --model), bf16, fp16, fp8_w8a8, int8_w8a8; several "
                        "tune one file each")  # fmt: skip
    p.add_argument("--batch-sizes", nargs="+", metavar="M",
                   help="batch sizes to tune (default: SGLang's 18, 1..4096); commas or spaces")  # fmt: skip
    p.add_argument("--output", type=Path, metavar="DIR",
                   help="write the config files into DIR instead of the plugin's user directory")  # fmt: skip
    p.add_argument("--workers", type=int, help="compile processes (default: CPU cores - 1)")
    p.add_argument("--budget-s", type=float, metavar="S",
                   help="stop searching after about S seconds per dtype and write the best found")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="ignore the saved state of an interrupted run")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--fit-for", metavar="GPU",
                   help="FOR TESTING: choose configs that fit another GPU (the oracle prunes for it) while "
                        "timing on this one with Hopper-only kernel paths off; the files are named for that GPU")  # fmt: skip
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ input


def _explicit_shape(args: argparse.Namespace) -> MoeShape:
    """--E/--N/--K/--topk (+ --block-shape, --per-channel) as moe-config reads them."""
    from sglang_consumer_gpu.cli.moe_config import _shape

    return _shape(argparse.Namespace(**{**vars(args), "model": None, "dtype": "bf16"}))


def layers(args: argparse.Namespace) -> list[tuple[MoeShape, str]]:
    """(shape, activation dtype) per requested dtype; one line of ValueError for bad input.

    A dtype the model is stored in keeps its quantization (block, per-channel); another one is
    what SGLang's online quantization runs (fp8 per-tensor, int8 per-channel) unless --block-shape
    / --per-channel say otherwise; 16-bit has no quantization."""
    if args.model:
        from sglang_consumer_gpu.models import load_model, moe_shape

        desc = load_model(args.model)
        base = moe_shape(desc, args.tp, args.ep)
        act = desc.activation_dtype
        quant = (None, False)
    else:
        base, act = _explicit_shape(args), "bfloat16"
        quant = (base.block_shape, base.per_channel_quant)
    out: dict[str, tuple[MoeShape, str]] = {}
    for name in (x.strip() for raw in args.dtype for x in raw.split(",") if x.strip()):
        dtype = base.dtype if name.lower() == "auto" else parse_dtype(name)
        if dtype not in (None, "fp8_w8a8", "int8_w8a8"):
            raise ValueError(f"{dtype} experts run another kernel than the one tune-moe tunes "
                             f"(fused_moe_kernel: {', '.join(TUNABLE)}); give one of those with --dtype")  # fmt: skip
        if dtype is None:
            shape = replace(base, dtype=None, block_shape=None, per_channel_quant=False)
        elif dtype == base.dtype and args.model:
            shape = base
        else:
            shape = replace(base, dtype=dtype, block_shape=quant[0], per_channel_quant=quant[1])
        a = "float16" if name.lower() in ("fp16", "float16", "half") else act
        label = shape.label
        if label in out and out[label][1] != a:
            raise ValueError(
                "bf16 and fp16 write the same SGLang config file: tune the dtype the model runs in"
            )
        out[label] = (shape, a)
    if not out:
        raise ValueError(f"--dtype names no dtype; give one or more of auto, {', '.join(TUNABLE)}")
    return list(out.values())


def batch_sizes(values: list[str] | None) -> tuple[int, ...]:
    from sglang_consumer_gpu.tune.space import SGLANG_BATCH_SIZES

    if not values:
        return SGLANG_BATCH_SIZES
    out = []
    for part in (x for v in values for x in v.split(",") if x.strip()):
        try:
            m = int(part)
        except ValueError:
            raise ValueError(f"--batch-sizes: {part!r} is not an integer") from None
        if not 1 <= m <= 65536:
            raise ValueError(f"--batch-sizes: {m} is outside 1..65536")
        out.append(m)
    return tuple(sorted(set(out)))


def live_gpu() -> Any:
    """The GPU this process times on (a CUDA context is made: the tuner launches kernels)."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError("no CUDA GPU visible: tune-moe times SGLang's kernel on the GPU it tunes for")
    from sglang_consumer_gpu.hardware import live_specs

    torch.cuda.init()
    specs = live_specs()
    return specs[torch.cuda.current_device()] if len(specs) > torch.cuda.current_device() else specs[0]


def check_gpus(live: Any, target: Any, shapes: list[tuple[MoeShape, str]], fit_for: bool) -> None:
    if not fit_for and live.capability[0] in (9, 10):
        raise ValueError(
            f"{live.name} is a data-center GPU whose SGLang kernel paths (swap-AB, PDL) tune-moe does not time; "
            "SGLang's own tuning script and shipped files cover it (--fit-for is for testing)"
        )
    if any(s.dtype == "fp8_w8a8" for s, _ in shapes):
        from sglang_consumer_gpu.planner.constraints import fp8_moe_before_sm89

        for gpu in dict.fromkeys([target, live]):
            if not gpu.supports_fp8_e4m3:
                raise ValueError(fp8_moe_before_sm89(gpu) + "; tune-moe times SGLang's kernels only: tune bf16 or int8_w8a8")


def writable(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create {out_dir}: {exc.strerror}; choose another --output") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to {out_dir}; choose another --output")
    return out_dir


# ------------------------------------------------------------------------------ run


def requests(args: argparse.Namespace) -> list[Any]:
    """Everything checked before anything is compiled; one-line ValueError otherwise."""
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.tune import output
    from sglang_consumer_gpu.tune.run import Request

    for name in ("tp", "ep", "workers"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name} must be at least 1 (got {v})")
    if args.budget_s is not None and not args.budget_s > 0:  # nan too: it would never stop the search
        raise ValueError(f"--budget-s must be positive (got {args.budget_s})")
    shapes = layers(args)
    grid = batch_sizes(args.batch_sizes)
    target = find_gpu(args.fit_for) if args.fit_for else None
    live = live_gpu()
    target = target or live
    check_gpus(live, target, shapes, bool(args.fit_for))
    out_dir = writable((args.output or output.default_dir()).expanduser())
    return [Request(shape, grid, target, live, out_dir, act, args.workers, args.budget_s, args.fresh)
            for shape, act in shapes]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from sglang_consumer_gpu.tune import report
    from sglang_consumer_gpu.tune.bench import GpuBench, triton_cache_entries
    from sglang_consumer_gpu.tune.run import tune
    from sglang_consumer_gpu.tune.search import during_interrupt
    from sglang_consumer_gpu.tune.state import LockedError

    reqs = requests(args)
    say = (lambda _: None) if args.json else (lambda s: print(s, flush=True))
    before = triton_cache_entries()

    def bench(r: Any) -> GpuBench:
        same = (r.target.name, r.target.capability) == (r.live.name, r.live.capability)
        return GpuBench(r.shape, r.act_dtype, r.target, live_target=same, workers=r.workers)

    interrupted = "tune-moe: interrupted; run the same command again to continue where it stopped"
    try:
        outcomes = tune(reqs, bench, say)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except LockedError as exc:
        print(f"sglang-consumer-gpu tune-moe: error: {exc}", file=sys.stderr)
        return 3
    except (OSError, RuntimeError) as exc:
        if during_interrupt(exc):
            print(interrupted, file=sys.stderr)
            return 130
        print(f"sglang-consumer-gpu tune-moe: error: {exc}", file=sys.stderr)
        return 1
    after = triton_cache_entries()
    for o in outcomes:
        o.record["triton_cache_new_kernels_all_dtypes"] = (
            None if before is None or after is None else after - before
        )
    if args.json:
        print(json.dumps([o.record for o in outcomes], indent=1))
        return 0
    for o in outcomes:
        r = o.request
        c = o.record["counters"]
        print(
            report.text(
                o.table,
                f"\n{r.label} on {r.live.name}"
                + (f" (fit for {r.target.name})" if r.target.name != r.live.name else ""),
            )
        )
        print(f"{c.get('compile_jobs', 0):.0f} configs compiled ({c.get('kernel_variants', 0):.0f} kernel "
              f"specializations, both GEMMs each), {c.get('timings', 0):.0f} timings, {c.get('waves', 0):.0f} waves, "
              f"{o.record['wall_s']:.0f} s")  # fmt: skip
        for note in o.notes:
            print(f"note: {note}")
        for path in o.written:
            print(f"wrote {path}")
    return 0
