"""Device check: SGLang's real attention kernels under every tile the plugin can choose.

For RTX 3090 / RTX 4090 / L40S / RTX 5090 and each head-dim pair, the tile the plugin derives
from the budget and SGLang's own sm_86/sm_89/sm_120 branch tile run through the measurement
engine (:mod:`sglang_consumer_gpu.measure.attention`): extend attention on random data (prefix +
extend, causal; sliding window; logit cap; custom mask) and context attention, against float32
references with NaN-poisoned outputs and the engine's bounds. Context attention also runs
through the plugin's real patch (``attention-prefill-blocks``) with SGLang's sm_120 branch
selected, so the rewritten launch is what is tested.

    PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/attention_correctness.py --out $OUT/attention_correctness.json   # device
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from scripts.device.sglang_env import ensure_sglang

ensure_sglang()  # an installed SGLang, else the device machine's carry of its kernel files

GPUS = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA L40S", "NVIDIA GeForce RTX 5090")


def extend_rows(quick: bool) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.attention import HEAD_DIMS
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.attention import VARIANTS, ExtendCase, ExtendRun, extend_choices

    rows = []
    for lq, lv in HEAD_DIMS:
        for tile, who in extend_choices(lq, lv, [find_gpu(g) for g in GPUS]).items():
            for i, variant in enumerate(VARIANTS[:1] if quick else VARIANTS):
                r = ExtendRun(ExtendCase.for_check(lq, lv, variant), seed=lq + i, slots=1).check(tile)
                rows.append({"kernel": "extend", "lq": lq, "lv": lv, "tile": tile, "variant": variant,
                             "chosen_by": who, **r.to_dict()})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def prefill_rows() -> list[dict[str, Any]]:
    """Through the plugin's patch for an RTX 5090 (SGLang picks its sm_120 BLOCK=128 there)."""
    from sglang_consumer_gpu.attention import PREFILL_HEAD_DIMS
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.hardware.current import override_spec
    from sglang_consumer_gpu.measure.attention import PrefillCase, PrefillRun
    from sglang_consumer_gpu.patches import attention_prefill

    spec = find_gpu("RTX 5090")
    rows = []
    for d in PREFILL_HEAD_DIMS:
        for dtype, causal in (("bfloat16", False), ("bfloat16", True), ("float32", False)):
            if dtype == "float32" and d not in (128, 256):
                continue
            run = PrefillRun(PrefillCase.for_check(d, causal, dtype), seed=d, slots=1)
            pa = run.pa
            original, saved = pa.context_attention_fwd, pa.CUDA_CAPABILITY
            before = attention_prefill.REWRITES[0]
            pa.context_attention_fwd = attention_prefill.PATCH.build(original, pa)
            pa.CUDA_CAPABILITY = spec.capability
            try:
                with override_spec(spec):
                    r = run.check(None)
            finally:
                pa.context_attention_fwd, pa.CUDA_CAPABILITY = original, saved
            rows.append({"kernel": "prefill", "lq": d, "dtype": dtype, "causal": causal, "spec": spec.name,
                         "rewritten": attention_prefill.REWRITES[0] - before, **r.to_dict()})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="causal only")
    args = ap.parse_args()
    from sglang_consumer_gpu.measure.common import environment

    t0 = time.time()
    rows = extend_rows(args.quick) + prefill_rows()
    out = {**environment(), "seconds": round(time.time() - t0, 1), "passed": sum(r["ok"] for r in rows),
           "total": len(rows), "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['passed']}/{out['total']} passed in {out['seconds']} s on {out['device']}")
    return 0 if out["passed"] == out["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
