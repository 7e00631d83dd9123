"""``sglang-consumer-gpu bench``: the plugin's kernel choices vs SGLang's own, timed on this GPU.

For a model's fused-MoE layer (per batch size) and its extend attention (prefill-heavy and
decode-heavy workloads): the config or tile the plugin gives SGLang and the one SGLang picks
alone, timed with the engine's timer (CUDA graphs, inputs rotated past L2, interleaved
rounds); where SGLang's own does not fit the GPU, "would fail: OutOfResources, needs N B".
Writes a JSON file (after every point: Ctrl-C leaves a valid partial report) and a PNG plot
(matplotlib, ``pip install 'sglang-consumer-gpu[bench]'``); prints the table and the paths.
``--plot FILE.json`` redraws the PNG of an earlier run (no GPU needed).

Exit status: 0 done; 1 a point errored or the plugin's config failed its correctness check;
2 bad input (model, --tp/--ep, batch sizes); 4 no GPU; 130 interrupted (partial report written).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_NO_GPU, EXIT_INTERRUPTED = 0, 1, 4, 130


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="time the plugin's MoE configs and attention tiles against SGLang's own for a model (table, JSON, PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="model directory, config.json, or Hugging Face id in the local HF cache")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size (default 1)")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel size (default 1; divides --tp)")
    p.add_argument("--batch-sizes", metavar="M,M,...",
                   help="fused-MoE batch sizes (default: the sizes SGLang's default launch runs, 1 .. 4096)")  # fmt: skip
    p.add_argument("--no-attention", action="store_true", help="fused MoE only")
    p.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="where the JSON and PNG go (default .)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    p.add_argument("--workers", type=int, help="compile processes (default: CPU cores - 1)")
    p.add_argument(
        "--plot", type=Path, metavar="FILE.json", help="only redraw the PNG of an earlier bench JSON"
    )
    p.set_defaults(func=run)


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.replace(" ", "").split(",") if x})
    except ValueError:
        raise ValueError(
            f"--batch-sizes {text!r}: give positive integers separated by commas, e.g. 1,16,256"
        ) from None
    if not sizes or sizes[0] <= 0:
        raise ValueError(f"--batch-sizes {text!r}: give positive integers separated by commas, e.g. 1,16,256")
    return sizes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def stem(gpu: str, smem: int, model: str, tp: int, ep: int) -> str:
    return _slug(f"bench_{gpu}_{smem}B_{Path(model).name or model}_tp{tp}" + (f"_ep{ep}" if ep > 1 else ""))


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="point" if "timing" in desc else "job", file=sys.stderr,
                leave=False, dynamic_ncols=True)  # fmt: skip


def _replot(path: Path) -> int:
    from sglang_consumer_gpu.bench.report import PlotUnavailable, plot

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not str(doc.get("schema", "")).startswith("sglang-consumer-gpu/bench/"):
            raise ValueError
    except (OSError, ValueError, UnicodeDecodeError):
        raise ValueError(f"--plot {path}: not a readable bench JSON file") from None
    png = path.with_suffix(".png")
    try:
        plot(doc, png)
    except PlotUnavailable as exc:
        print(f"sglang-consumer-gpu bench: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"wrote {png}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.plot:
        return _replot(args.plot)
    if not args.model:
        raise ValueError("give --model PATH (a model directory, config.json, or HF id in the local HF cache)")
    if args.tp <= 0 or args.ep <= 0:
        raise ValueError(f"--tp and --ep must be positive (got tp={args.tp}, ep={args.ep})")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    batch_sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
    from sglang_consumer_gpu.models import load_model

    desc = load_model(args.model)  # an unreadable model: ValueError, one line
    if desc.is_moe and desc.quantization.moe_dtype != "other":
        from sglang_consumer_gpu.models import moe_shape

        # a --tp/--ep the model cannot be split into: one line, before looking for a GPU
        moe_shape(desc, args.tp, args.ep)
    from sglang_consumer_gpu.selftest.live import NoGpu, live_gpu

    try:
        live = live_gpu("bench")
    except NoGpu as exc:
        print(f"sglang-consumer-gpu bench: {exc} (exit {EXIT_NO_GPU})", file=sys.stderr)
        return EXIT_NO_GPU
    if not getattr(args, "verbose", False):
        for name in ("sglang", "sglang_consumer_gpu"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from sglang_consumer_gpu.bench.points import list_points
    from sglang_consumer_gpu.bench.report import PlotUnavailable, plot, text
    from sglang_consumer_gpu.bench.run import document, run_bench
    from sglang_consumer_gpu.hardware import override_spec
    from sglang_consumer_gpu.measure.common import environment

    spec = live.spec
    with override_spec(spec):
        points = list_points(spec, desc, tp=args.tp, ep=args.ep, batch_sizes=batch_sizes)
        if args.no_attention:
            points.part("attention").points = []
        doc = document(points, environment(), list(live.notes))
        base = args.out / stem(spec.name, spec.smem_per_block_optin, desc.name, args.tp, args.ep)
        json_path, png_path = base.with_suffix(".json"), base.with_suffix(".png")
        status = EXIT_OK
        try:
            run_bench(points, doc, json_path, workers=args.workers, progress=_bar)
        except KeyboardInterrupt:
            status = EXIT_INTERRUPTED
    wrote = [str(json_path)]
    try:
        plot(doc, png_path)
        wrote.append(str(png_path))
    except PlotUnavailable as exc:
        doc["notes"].append(str(exc))
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(text(doc))
    where = " and ".join(wrote)
    if status == EXIT_INTERRUPTED:
        print(f"sglang-consumer-gpu bench: interrupted: partial report in {where}", file=sys.stderr)
        return status
    print(f"wrote {where}", file=sys.stderr if args.json else sys.stdout)
    summary = doc.get("summary", {})
    bad = sum(
        summary.get(k, {}).get("errors", 0) + summary.get(k, {}).get("plugin_check_failed", 0)
        for k in ("moe", "attention")
    )
    return EXIT_FAIL if bad else status
