#!/usr/bin/env python
"""Tune the Triton int8 GEMM's dispatch table (see :mod:`sglang_consumer_gpu.tune.int8`).

On the device machine (H100)::

    PYTHONPATH=. python scripts/tune_int8.py --out tests/fixtures/results/h100_int8_tune.json

Here (no GPU), the dispatch table the plugin ships, from a tuning result::

    PYTHONPATH=. python scripts/tune_int8.py --derive tests/fixtures/results/h100_int8_tune.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sglang_consumer_gpu.int8.tiles import M_BUCKETS
from sglang_consumer_gpu.tune.int8 import TABLE_PATH, tune, write_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("tests/fixtures/results/h100_int8_tune.json"))
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--buckets", default=",".join(map(str, M_BUCKETS)))
    p.add_argument("--max-seconds", type=float, default=400.0, help="stop timing new shapes after this long")
    p.add_argument(
        "--derive", type=Path, help="derive the dispatch table from this tuning JSON (no GPU needed)"
    )
    p.add_argument("--table-out", type=Path, default=TABLE_PATH)
    args = p.parse_args()
    if args.derive:
        table = write_table(json.loads(args.derive.read_text()), args.table_out)
        print(f"wrote {args.table_out}: {len(table['tables']['low_smem']['entries'])} entries")
        return 0
    tune(args.out, args.workers, tuple(int(b) for b in args.buckets.split(",")), args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
