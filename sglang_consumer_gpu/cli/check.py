"""``sglang-consumer-gpu check``: will every kernel the plugin picks fit this GPU?

Compiles, for the named GPU (no GPU needed: Triton compiles for its arch),
every configuration the plugin would choose -- fused-MoE tiles over the batch
grid, attention block sizes per head dim, int8 GEMM tiles -- and prints
required vs available shared memory per block with PASS/FAIL, or SKIP where
the GPU cannot run that kind of layer at all (with the reason). ``--baseline``
adds what SGLang 0.5.23 chooses without the plugin (areas ``*-baseline``), for
a before/after view.

Exit status: 0 every configuration the plugin chooses PASSes; 1 one FAILs;
2 bad input (unknown GPU or area); 3 a check provider broke (named on stderr).
SGLang's own choices (``--baseline``) are the before picture and do not set
the exit status, unless ``--only`` names their area.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from sglang_consumer_gpu.checks import registry
from sglang_consumer_gpu.hardware import current_spec, find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.cache import default_cache
from sglang_consumer_gpu.oracle.item import FAIL, PASS, SKIP, CheckItem


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check",
        help="compile every kernel configuration the plugin would choose for a GPU and check its shared memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gpu", help='GPU name (e.g. "NVIDIA GeForce RTX 4090", "4090", "sm_89"); default: this machine\'s'
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--full", action="store_true", help="every shape, batch size and variant (slow when cold)")
    p.add_argument(
        "--only",
        action="append",
        metavar="AREA",
        help=f"only this area (repeatable): {', '.join(registry.areas())}",
    )
    p.add_argument("--baseline", action="store_true", help="also check SGLang's own, unpatched choices")
    p.add_argument("--fails", action="store_true", help="list only FAIL rows in the table")
    p.set_defaults(func=run)


def _spec(name: str | None) -> GpuSpec:
    if name:
        return find_gpu(name)
    spec = current_spec()
    if spec is None:
        raise ValueError(
            "no NVIDIA GPU visible here; name one with --gpu (e.g. --gpu 'NVIDIA GeForce RTX 4090')"
        )
    return spec


def _row(item: CheckItem) -> tuple[str, ...]:
    r = item.resources
    need = f"{r.shared:,}" if r else "-"
    have = f"{r.limit:,}" if r else "-"
    why = item.error or item.skip
    config = f"{item.config}  [{why}]" if why else item.config
    return (item.area, item.kernel, config, need, have, item.status)


def _table(rows: list[tuple[str, ...]]) -> str:
    head = ("area", "kernel", "config", "required B", "available B", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {3, 4}
    lines = []
    for r in [head, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _count(items: list[CheckItem], status: str, area: str | None = None) -> int:
    return sum(i.status == status for i in items if area is None or i.area == area)


def _per_area(items: list[CheckItem]) -> str:
    parts = []
    for area in dict.fromkeys(i.area for i in items):
        skipped = _count(items, SKIP, area)
        checked = sum(i.area == area for i in items) - skipped
        parts.append(
            f"{area}: {_count(items, PASS, area)}/{checked} pass" + (f", {skipped} skip" if skipped else "")
        )
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    from sglang_consumer_gpu.versions import coverage

    if not (cov := coverage("check")).covered:
        raise ValueError(f"{cov.message}. What to do: {cov.advice}")
    providers = registry.select(args.only, baseline=args.baseline)
    spec = _spec(args.gpu)
    from tqdm import tqdm

    if not getattr(args, "verbose", False):  # SGLang warns per missing tuned file; the table says it all
        logging.getLogger("sglang").setLevel(logging.ERROR)

    started = time.perf_counter()
    items: list[CheckItem] = []
    fails = 0
    with registry.Session(spec) as session:
        listing = tqdm(providers, desc="check: listing", unit="area", delay=2.0, file=sys.stderr, leave=False)
        with listing:  # the first provider that drives SGLang imports it (seconds)
            listed = session.list_items(listing, full=args.full)
        for broken in listed.broken:
            print(f"check: the {broken.area} provider broke: {broken.error}", file=sys.stderr)
        with tqdm(
            total=len(listed.items), desc=f"check {spec.name}", unit="cfg", delay=2.0, file=sys.stderr, leave=False
        ) as bar:
            for done in session.finish(listed.items):
                bar.update(1)
                items.extend(done)
                failed = sum(i.status == FAIL for i in done)
                if failed:
                    fails += failed
                    bar.set_postfix(fail=fails)
    seconds = time.perf_counter() - started
    counted = registry.counted_areas(providers, args.only)
    status = registry.exit_status(items, listed.broken, counted)
    cache = default_cache()
    summary = {
        "gpu": spec.name,
        "arch": spec.arch_name,
        "limit_bytes": spec.smem_per_block_optin,
        "checked": len(items),
        "passed": _count(items, PASS),
        "failed": fails,
        "skipped": _count(items, SKIP),
        "broken_providers": [{"area": b.area, "error": b.error} for b in listed.broken],
        "counted_areas": sorted(counted),
        "exit_status": status,
        "seconds": round(seconds, 2),
        "cache": cache.stats() if cache else None,
    }
    if args.json:
        print(
            json.dumps(
                {"summary": summary, "gpu": spec.to_dict(), "items": [i.to_dict() for i in items]}, indent=1
            )
        )
    else:
        shown = [i for i in items if i.status == FAIL] if args.fails else items
        if shown:
            print(_table([_row(i) for i in shown]))
        skipped = _count(items, SKIP)
        print(
            f"\n{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin:,} B shared memory per block): "
            f"{len(items)} configurations checked in {seconds:.1f} s, {fails} FAIL"
            + (f", {skipped} SKIP" if skipped else "")
            + f" ({_per_area(items)})"
        )
        uncounted = sum(i.status == FAIL and i.area not in counted for i in items)
        if uncounted:
            print(
                f"({uncounted} FAIL in SGLang's own choices: the before picture, not counted in the exit status)"
            )
    for broken in listed.broken:
        print(
            f"check: exit {status}: the {broken.area} provider broke, its area is not fully checked",
            file=sys.stderr,
        )
    if not items and not listed.broken:
        print("check: nothing was checked (no provider produced an item)", file=sys.stderr)
    return status
