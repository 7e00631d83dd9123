"""Does GROUP_SIZE_M change a decode-sized launch? (issue 12; tune-moe does not time GROUP_SIZE_M
variants where an expert gets fewer than two M tiles of tokens, tune/space.py:group_variants).

On the H200, tune_check run 3 put the exhaustive sweep's 16x64x128-g64-s3 at 1.046x tune-moe's
16x64x128-g1-s3 (Qwen3-30B-A3B fp8_w8a8, M = 4); run 2 found 1.006x for 16x128x128 g64 vs g1 at
the same point. Here each pair is timed interleaved (7 rounds) five times over, in one process,
so the ratio's own spread shows whether the difference is real. Prints one JSON line per pair.

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1     # carry .carry/sglang-0.5.17
    PYTHONPATH=$PWD python3 scripts/device/group_check.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json

PAIRS = (
    (4, "16x64x128-g1-w4-s3", "16x64x128-g64-w4-s3"),
    (4, "16x128x128-g1-w4-s4", "16x128x128-g64-w4-s4"),
    (16, "16x64x128-g1-w4-s4", "16x64x128-g32-w4-s4"),
)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from sglang_consumer_gpu.families.moe import REFERENCE
    from sglang_consumer_gpu.measure.moe import MoeCase, MoeLayer, parse_config_key
    from sglang_consumer_gpu.measure.timer import Timer

    shape = dataclasses.replace(REFERENCE, dtype="fp8_w8a8")
    timer = Timer(rounds=7)
    for M, a, b in PAIRS:
        layer = MoeLayer(MoeCase(shape, M))
        fns = {k: layer.gemms(parse_config_key(k)) for k in (a, b)}
        ratios = []
        for _ in range(5):
            t = timer.compare(fns, len(layer.slots))
            ratios.append(t[a].us / t[b].us)
        print(json.dumps({"M": M, "g1": a, "grouped": b, "g1_over_grouped_us": ratios}), flush=True)


if __name__ == "__main__":
    main()
