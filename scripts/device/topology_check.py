"""Device check of the multi-GPU reader (sglang_consumer_gpu.topology) against CUDA itself.

Reads the box the way ``doctor`` does (NVML and the NCCL library file, before torch is imported),
then asks CUDA through torch for the same facts: peer access of every pair
(``torch.cuda.can_device_access_peer``), the NCCL torch loaded (``torch.cuda.nccl.version``),
each GPU's name and memory; saves ``nvidia-smi topo -m`` beside them. Exit 0 when every fact
agrees, 1 otherwise. Needs two or more GPUs.

    python3 scripts/device/topology_check.py --out $OUT/topology_check.json      # device, 2+ GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# CUDA's ordinals follow NVML's (PCI bus) order, so position i is the same GPU to both
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from sglang_consumer_gpu.topology import Layout, diagnose, installed_nccl, read_topology

    topo = read_topology()
    nccl = installed_nccl()
    if "torch" in sys.modules:
        raise SystemExit("torch was imported before the reader ran: the check would not show it needs none")
    if topo is None or len(topo.gpus) < 2:
        raise SystemExit(f"needs 2+ GPUs; NVML sees {len(topo.gpus) if topo else 0}")

    import torch

    checks: list[dict[str, Any]] = []

    def check(what: str, ours: Any, cuda: Any) -> None:
        checks.append({"what": what, "reader": ours, "cuda": cuda, "agree": ours == cuda})

    for pos, g in enumerate(topo.gpus):
        props = torch.cuda.get_device_properties(pos)
        check(f"GPU {pos} name", g.spec.name, props.name)
        check(f"GPU {pos} total memory (MiB)", g.memory_total >> 20, props.total_memory >> 20)
    for link in topo.links:
        cuda_peer = torch.cuda.can_device_access_peer(link.a, link.b) and torch.cuda.can_device_access_peer(
            link.b, link.a
        )
        check(f"GPUs {link.a}+{link.b} peer access", link.peer_access, cuda_peer)
    loaded = torch.cuda.nccl.version()  # (2, 27, 3); an int 22703 in older torch
    if isinstance(loaded, int):
        loaded = (loaded // 10000, loaded // 100 % 100, loaded % 100)
    check("NCCL version", nccl.version, ".".join(map(str, loaded)))
    try:
        smi = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        smi = f"nvidia-smi failed: {exc}"
    issues = diagnose(topo, Layout(tp=len(topo.gpus)), nccl, os.environ)
    result = {
        "topology": topo.to_dict(),
        "nccl": nccl.to_dict(),
        "checks": checks,
        "issues": [i.to_dict() for i in issues],
        "nvidia_smi_topo": smi,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    for c in checks:
        print(f"{'ok  ' if c['agree'] else 'DIFF'} {c['what']}: reader {c['reader']!r}, CUDA {c['cuda']!r}")
    print(smi)
    return 0 if all(c["agree"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
