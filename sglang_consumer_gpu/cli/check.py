"""``sglang-consumer-gpu check``: will every kernel the plugin picks fit this GPU?

Compiles, for the named GPU (no GPU needed: Triton compiles for its arch),
every configuration the plugin would choose -- fused-MoE tiles over the batch
grid, attention block sizes per head dim -- and prints required vs available
shared memory per block with PASS/FAIL. ``--baseline`` adds what SGLang
0.5.23 chooses without the plugin (areas ``*-baseline``), for a before/after
view. Exit status: 0 all PASS, 1 any FAIL, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from sglang_consumer_gpu.hardware import current_spec, find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec


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
        "--only", action="append", metavar="AREA", help="only these areas (moe, attention, moe-baseline, ...)"
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


def _wanted(area: str, only: list[str] | None) -> bool:
    return not only or area in only


def collect(spec: GpuSpec, *, full: bool, baseline: bool, only: list[str] | None) -> Iterator[Any]:
    """CheckItems from every provider; a provider whose module is missing is
    reported on stderr and skipped, one that raises becomes a FAIL item."""
    from sglang_consumer_gpu.oracle import checks

    names = [*checks.PROVIDERS, *(checks.BASELINE_PROVIDERS if baseline else ())]
    for name in names:
        module = name.partition(":")[0]
        default_area = module.rsplit(".", 1)[-1]
        if default_area == "checks" and module != "sglang_consumer_gpu.oracle.checks":
            default_area = module.rsplit(".", 2)[-2]
        try:
            func = checks.load_provider(name)
        except Exception as exc:
            yield checks.CheckItem(default_area, name, "provider import", None, checks._err(exc))
            continue
        if func is None:
            print(f"check: provider {name} skipped: its module is not installed", file=sys.stderr)
            continue
        areas = getattr(func, "areas", None)
        if only and areas and not any(a in only for a in areas):
            continue
        try:
            for item in func(spec, full=full):
                for done in checks.expand(item, default_area):
                    if _wanted(done.area, only):
                        yield done
        except Exception as exc:
            yield checks.CheckItem(default_area, name, "provider", None, checks._err(exc))


def _row(item: Any) -> tuple[str, ...]:
    r = item.resources
    need = f"{r.shared:,}" if r else "-"
    have = f"{r.limit:,}" if r else "-"
    status = "PASS" if item.ok else "FAIL"
    config = item.config if not item.error else f"{item.config}  [{item.error}]"
    return (item.area, item.kernel, config, need, have, status)


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


def run(args: argparse.Namespace) -> int:
    spec = _spec(args.gpu)
    from tqdm import tqdm

    if not getattr(args, "verbose", False):  # SGLang warns per missing tuned file; the table says it all
        logging.getLogger("sglang").setLevel(logging.ERROR)

    from sglang_consumer_gpu.oracle.cache import default_cache

    started = time.perf_counter()
    items = []
    bar = tqdm(desc=f"check {spec.name}", unit="cfg", delay=2.0, file=sys.stderr, leave=False)
    try:
        for item in collect(spec, full=args.full, baseline=args.baseline, only=args.only):
            items.append(item)
            bar.update(1)
            if not item.ok:
                bar.set_postfix(fail=sum(not i.ok for i in items))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    fails = [i for i in items if not i.ok]
    cache = default_cache()
    summary = {
        "gpu": spec.name,
        "arch": spec.arch_name,
        "limit_bytes": spec.smem_per_block_optin,
        "checked": len(items),
        "passed": len(items) - len(fails),
        "failed": len(fails),
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
        shown = fails if args.fails else items
        if shown:
            print(_table([_row(i) for i in shown]))
        areas = sorted({i.area for i in items})
        per_area = ", ".join(
            f"{a}: {sum(i.ok for i in items if i.area == a)}/{sum(i.area == a for i in items)} pass"
            for a in areas
        )
        print(
            f"\n{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin:,} B shared memory per block): "
            f"{len(items)} configurations checked in {seconds:.1f} s, {len(fails)} FAIL ({per_area})"
        )
    if not items:
        print("check: nothing was checked (no provider produced an item)", file=sys.stderr)
        return 1
    return 1 if fails else 0
