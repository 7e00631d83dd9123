"""Compare the planner's per-GPU memory numbers with a real ``launch_server`` log.

    PYTHONPATH=$PWD:$PYTHONPATH python scripts/planner_vs_log.py --log server.log --model tests/fixtures/models/Qwen3-30B-A3B \\
        --gpu "NVIDIA H200" --gpu-mem 140.4 --out results/planner_vs_log.json -- --tp 1 --attention-backend triton

Everything after ``--`` is the server's own flags (as launched). The static
fraction the server logged (its ``server_args`` dump) is passed to the planner,
so a different SGLang version's default does not blur the memory models; the
planner's own SGLang 0.5.23 default is reported beside it. Writes one JSON
file (atomically) and prints the comparison table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.models import load_model, resolve
from sglang_consumer_gpu.models.launch import set_flag
from sglang_consumer_gpu.planner.memory import GIB, plan_memory
from sglang_consumer_gpu.planner.sglang_edge import resolve_launch
from sglang_consumer_gpu.planner.sglang_log import compare, parse_log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--model", required=True)
    ap.add_argument("--gpu", required=True)
    ap.add_argument(
        "--gpu-mem", type=float, help="GiB per GPU as the device reports it (default: the catalog's)"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("server_args", nargs=argparse.REMAINDER)
    ns = ap.parse_args()
    flags = [a for a in ns.server_args if a != "--"]
    log = parse_log(ns.log.read_text(errors="replace"))
    spec = find_gpu(ns.gpu)
    gpu_bytes = ns.gpu_mem * GIB if ns.gpu_mem else float(spec.memory_bytes)
    files = resolve(ns.model)
    desc = load_model(ns.model)
    default = resolve_launch(spec, str(files.model_dir), flags, gpu_bytes)
    if log.mem_fraction_static is not None:
        flags = list(set_flag(flags, "--mem-fraction-static", str(log.mem_fraction_static)))
    launch = resolve_launch(spec, str(files.model_dir), flags, gpu_bytes)
    mem = plan_memory(desc, launch, gpu_bytes)
    rows = compare(
        log,
        weights_gib=mem.worst.weights / GIB,
        kv_bytes_per_token=mem.worst.kv_bytes_per_token,
        planner_tokens=mem.kv_tokens,
        pre_load_gib=mem.pre_load_bytes / GIB,
        fraction=launch.mem_fraction_static,
        page_size=launch.page_size,
    )
    result = {
        "gpu": spec.name,
        "gpu_gib": gpu_bytes / GIB,
        "model": desc.name,
        "server_flags": flags,
        "log": log.to_dict(),
        "mem_fraction_static": {
            "server_logged": log.mem_fraction_static,
            "sglang_0.5.23_default": default.mem_fraction_static,
        },
        "planner": mem.to_dict(),
        "comparison": rows,
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=ns.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, ns.out)
    print(f"{'quantity':<26} {'planner':>14} {'SGLang log':>14} {'ratio':>8}")
    for name, r in rows.items():
        print(f"{name:<26} {r['planner']!s:>14.14} {r['sglang']!s:>14.14} {r['ratio']!s:>8}")
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
