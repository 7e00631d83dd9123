"""``doctor``'s Multi-GPU section: the visible GPUs, how each pair is linked (NVLink or PCIe,
peer access), their free memory against SGLang's balance check, the NCCL that will run them,
and what SGLang's start-up does with all of it for ``--tp`` over every visible GPU.
One line when there are fewer than two GPUs.
"""

from __future__ import annotations

import os
from typing import Any

from sglang_consumer_gpu.topology import Layout, diagnose, installed_nccl, read_topology
from sglang_consumer_gpu.topology.model import GIB

_TAG = {"fail": "x", "risk": "!", "info": "-"}


def report() -> dict[str, Any]:
    """The section as data (``doctor --json``'s ``multi_gpu``)."""
    topo = read_topology()
    count = len(topo.gpus) if topo else 0
    if topo is None or count < 2:
        return {"gpus": count}
    nccl = installed_nccl()
    layout = Layout(tp=count)
    return {
        "gpus": count,
        "topology": topo.to_dict(),
        "nccl": nccl.to_dict() | {"text": nccl.describe()},
        "launch": f"--tp {count}",
        "issues": [i.to_dict() | {"line": i.line()} for i in diagnose(topo, layout, nccl, os.environ)],
        "links_text": [
            f"GPU {topo.gpus[link.a].index} - GPU {topo.gpus[link.b].index}: {link.describe()}, "
            f"peer access {_peer_words(link.peer_access, link.why_not)}"
            for link in topo.links
        ],
    }


def _peer_words(peer: bool | None, why_not: str) -> str:
    if peer is None:
        return "unknown"
    return "yes" if peer else "no" + (f" ({why_not})" if why_not else "")


def _gpu_line(g: dict[str, Any]) -> str:
    free = f", {g['memory_free'] / GIB:.2f} GiB free" if g["memory_free"] is not None else ""
    users = f" (in use: {', '.join(g['processes'])})" if g["processes"] else ""
    return f"  GPU {g['index']}  {g['name']} ({g['arch']})  {g['memory_total'] / GIB:.2f} GiB{free}{users}"


def lines(data: dict[str, Any]) -> list[str]:
    """The human-readable section."""
    count = data["gpus"]
    if count < 2:
        return [f"Multi-GPU: {'one GPU' if count == 1 else 'no GPU'} visible; nothing to check."]
    topo = data["topology"]
    driver = f", driver {topo['driver']}" if topo["driver"] else ""
    out = [f"Multi-GPU: {count} GPUs (read from NVML{driver})"]
    out += [_gpu_line(g) for g in topo["gpus"]]
    links = data["links_text"]
    pairs = {text.split(": ", 1)[1] for text in links}
    out += (
        [f"  every pair: {pairs.pop()}"] if len(pairs) == 1 and len(links) > 1 else [f"  {t}" for t in links]
    )
    out.append(f"  {data['nccl']['text']}")
    issues = data["issues"]
    out.append(
        f"  With {data['launch']} over these GPUs:" + ("" if issues else " nothing stands in the way.")
    )
    out += [f"    {_TAG[i['severity']]} [{i['area']}] {i['line']}" for i in issues]
    return out
