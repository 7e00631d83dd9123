"""``scripts/device/safety_check.py`` without a GPU: ``--dry-run`` builds every check's seeded
inputs twice on the CPU and the float32 references of the MoE and extend checks, on the checks'
own shapes (the launches themselves need the GPU: scripts/device/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_builds_the_same_inputs_twice_and_finite_references():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "scripts/device/safety_check.py", "--dry-run", "--cap", "99000"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["ok"] and doc["dry_run"] and doc["cap"] == 99000
    assert doc["checks"] == ["moe", "extend", "dense_prefill", "unsalvageable", "matmul_invariance",
                             "cuda_graph", "longtail", "overhead"]  # fmt: skip
    # the up GEMM's rows: M * topk tokens x 2N; extend: every new token, every query head, Lv
    assert doc["moe"]["reference_shape"] == [256 * 2, 2 * 512] and doc["moe"]["same_inputs"]
    assert doc["extend"]["reference_shape"] == [64 + 40, 16, 512] and doc["extend"]["reference_finite"]
    assert doc["dense_prefill"]["same_inputs"] and doc["matmul_invariance"]["same_inputs"]
