"""``sglang-consumer-gpu selftest``: the plugin's kernel paths on this GPU, run and checked.

Every kernel path the plugin chooses for the live GPU and the installed SGLang -- fused MoE
with the configs its lookup returns (user-tuned, bundled, SGLang's, heuristic; every dtype
the GPU runs), the attention tiles its patches choose, the int8 GEMM route, the safety net --
compiled, launched on random data with NaN-poisoned outputs and compared with a float32
reference. Prints a PASS / FAIL / SKIP(reason) table; ``--json`` prints one JSON document.
``--quick`` runs a subset (about 35 kernel compiles, ~4 s each per core, in parallel).
``--list`` prints the plan without running it, also for another GPU (``--gpu``, ``--smem``).
The same cases run as ``pytest --pyargs sglang_consumer_gpu.tests``.

Exit status: 0 every case that ran passed (at least one ran); 1 a case failed; 2 bad input;
3 nothing tested (every case skipped); 4 no GPU; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec


def register(sub: Any) -> None:
    p = sub.add_parser(
        "selftest",
        help="run and check every kernel path the plugin chooses for this GPU (PASS/FAIL/SKIP table)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="a subset: every area and source, fewer shapes and batch sizes"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON document to FILE")
    p.add_argument("--list", action="store_true", help="print the plan (which cases, which configs) and exit")
    p.add_argument("--gpu", help="with --list: the plan for this catalog GPU instead of the live one")
    p.add_argument(
        "--smem", type=int, metavar="BYTES", help="with --list: that GPU with this shared memory per block"
    )
    p.add_argument(
        "--model", help="also test this model's MoE layer and attention head dims (dir, config.json, HF id)"
    )
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size for --model (default 1)")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel size for --model (default 1)")
    p.add_argument("--max-per-source", type=int, metavar="N",
                   help="full mode: at most N config-file entries per source (user, bundled, sglang)")  # fmt: skip
    p.add_argument("--workers", type=int, help="compile processes (default: CPU cores - 1)")
    p.add_argument("--fails", action="store_true", help="list only FAIL rows in the table")
    p.set_defaults(func=run)


def model_inputs(
    args: argparse.Namespace, spec: GpuSpec
) -> tuple[list[Any], list[tuple[int, int]], list[str]]:
    """(MoE layers, extend head dims, notes) of ``--model``; bad input raises ValueError."""
    if not args.model:
        return [], [], []
    from sglang_consumer_gpu.families.moe import model_layer
    from sglang_consumer_gpu.models import load_model
    from sglang_consumer_gpu.moe.shape import dtype_label

    desc = load_model(args.model)
    shape, why = model_layer(desc, spec, args.tp, args.ep)
    a = desc.attention
    dims = [(a.head_dim, a.v_head_dim)]
    if a.is_mla:
        dims.append(((a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0), a.kv_lora_rank or 0))
    layers = [(f"{desc.name} {dtype_label(shape.dtype)}", shape, desc.activation_dtype)] if shape else []
    return layers, dims, [why] if why else []


def _plan_spec(args: argparse.Namespace) -> GpuSpec | None:
    if args.gpu:
        from sglang_consumer_gpu.hardware import find_gpu

        spec = find_gpu(args.gpu)
        if args.smem:
            spec = dataclasses.replace(spec, smem_per_block_optin=args.smem, source=f"{spec.source}+--smem")
        return spec
    return None


def run(args: argparse.Namespace) -> int:
    from sglang_consumer_gpu.selftest.live import NoGpu, live_gpu
    from sglang_consumer_gpu.selftest.report import EXIT_NO_GPU, no_gpu_document

    if (args.gpu or args.smem) and not args.list:
        raise ValueError("--gpu and --smem only go with --list: selftest runs its kernels on the live GPU")
    if args.smem is not None and args.smem <= 0:
        raise ValueError(f"--smem wants a positive number of bytes (e.g. 101376), not {args.smem}")
    if args.max_per_source is not None and args.max_per_source < 0:
        raise ValueError("--max-per-source wants 0 or more")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    mode = "quick" if args.quick else "full"
    spec = _plan_spec(args)
    notes: list[str] = []
    if spec is None:
        try:
            live = live_gpu("selftest")
        except NoGpu as exc:
            doc = no_gpu_document(str(exc), mode)
            if args.out:
                from sglang_consumer_gpu.measure.report import write_json

                write_json(args.out, doc)
            if args.json:
                print(json.dumps(doc, indent=1))
            print(f"sglang-consumer-gpu selftest: {exc} (exit {EXIT_NO_GPU})", file=sys.stderr)
            return EXIT_NO_GPU
        spec, notes = live.spec, list(live.notes)
    if not getattr(args, "verbose", False):  # the table says it all; -v shows SGLang's and the plugin's logs
        for name in ("sglang", "sglang_consumer_gpu"):
            logging.getLogger(name).setLevel(logging.ERROR)
    layers, dims, model_notes = model_inputs(args, spec)
    from sglang_consumer_gpu.measure.common import sglang_version
    from sglang_consumer_gpu.selftest.plan import build_plan

    plan = build_plan(spec, sglang=sglang_version(), quick=args.quick, model_shapes=layers, model_attention=dims,
                      max_per_source=args.max_per_source)  # fmt: skip
    notes += model_notes
    if args.list:
        return _list(plan, notes, args.json)
    return _run(plan, notes, args)


def _list(plan: Any, notes: list[str], as_json: bool) -> int:
    from sglang_consumer_gpu.selftest.report import plan_table

    if as_json:
        print(json.dumps({**plan.to_dict(), "notes": [*notes, *plan.notes]}, indent=1))
        return 0
    spec = plan.spec
    print(plan_table(plan))
    skipped = len(plan.cases) - len(plan.runnable)
    print(f"\n{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin:,} B shared memory per block), "
          f"SGLang {plan.sglang or '-'}, {plan.mode}: {len(plan.cases)} cases ({len(plan.runnable)} to run, "
          f"{skipped} SKIP), about {plan.kernel_compiles()} kernel compiles on a cold cache")  # fmt: skip
    for note in [*notes, *plan.notes]:
        print(f"note: {note}")
    return 0


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="case" if "compil" not in desc else "job", file=sys.stderr,
                leave=False, dynamic_ncols=True)  # fmt: skip


def _run(plan: Any, notes: list[str], args: argparse.Namespace) -> int:
    from sglang_consumer_gpu.families.cases import FAIL
    from sglang_consumer_gpu.measure.common import environment
    from sglang_consumer_gpu.measure.report import write_json
    from sglang_consumer_gpu.selftest.report import Report, result_table
    from sglang_consumer_gpu.selftest.run import session

    started = time.perf_counter()
    results: list[Any] = []
    interrupted = False
    report = Report(plan, results, notes=notes)
    try:
        with session(plan, workers=args.workers, progress=_bar) as runner:
            report.patches, report.triton_limit = runner.patches, runner.triton_limit
            if runner.triton_limit is not None and runner.triton_limit != plan.spec.smem_per_block_optin:
                notes.append(
                    f"Triton reports {runner.triton_limit:,} B shared memory per block here, the plugin decides for "
                    f"{plan.spec.smem_per_block_optin:,} B (an emulated cap Triton does not see: the plugin's .pth "
                    "hook is not active in this Python?)"
                )
            from sglang_consumer_gpu import settings

            if not settings.plugin_enabled():
                notes.append(
                    f"{settings.OFF_SWITCH}=0: the plugin's patches are off, so its choices are not in effect"
                )
            runner.prepare()
            report.compile = runner.compile_summary()
            report.environment = environment()
            with _bar(len(plan.cases), "selftest: running") as bar:
                for case in plan.cases:
                    result = runner.execute(case)
                    results.append(result)
                    if args.out:  # after every case: a run cut short leaves a valid partial report
                        report.seconds = time.perf_counter() - started
                        write_json(args.out, report.to_dict())
                    if result.status == FAIL:
                        bar.set_postfix(fail=sum(r.status == FAIL for r in results))
                    bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    report.interrupted = interrupted
    report.seconds = time.perf_counter() - started
    doc = report.to_dict()
    if args.out:
        write_json(args.out, doc)
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
    else:
        shown = [r for r in results if r.status == FAIL] if args.fails else results
        if shown:
            print(result_table(shown))
        print(f"\n{report.headline()}")
        for note in doc["notes"]:
            print(f"note: {note}")
        if args.out:
            print(f"wrote {args.out}")
    return report.status
