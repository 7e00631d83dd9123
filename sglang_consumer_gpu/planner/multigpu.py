"""The box a launch runs on, folded into its verdict: memory balance, NCCL for the
architecture and what custom all-reduce does (:mod:`sglang_consumer_gpu.topology`). Pure.

With live GPUs the box is the one NVML reads; for ``--gpu NAME`` (or more GPUs than this
machine has) it is N of that GPU linked as NVIDIA's driver links that kind
(:func:`~sglang_consumer_gpu.topology.assumed_topology`), and the verdict says so.
"""

from __future__ import annotations

from collections.abc import Mapping

from sglang_consumer_gpu import topology
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.launch import Launch
from sglang_consumer_gpu.planner.constraints import FAIL, INFO, RISK, Finding
from sglang_consumer_gpu.topology import Layout, NcclLibrary, Topology, assumed_topology, diagnose

SEVERITY = {topology.FAIL: FAIL, topology.RISK: RISK, topology.INFO: INFO}
AREA = "multi-gpu"


def layout_of(launch: Launch) -> Layout:
    return Layout(
        tp=launch.tp,
        pp=launch.pp,
        dp=launch.dp,
        nnodes=launch.nnodes,
        custom_all_reduce=not launch.disable_custom_all_reduce,
        p2p_check=launch.enable_p2p_check,
    )


def box_for(live: Topology | None, spec: GpuSpec, launch: Launch, gpus: int | None = None) -> Topology:
    """The live box when it has several GPUs, else ``gpus`` (or as many as a node of the launch
    uses) of ``spec`` as that kind of GPU is linked."""
    if live is not None and len(live.gpus) > 1:
        return live
    return assumed_topology(spec, max(gpus or 0, launch.per_node))


def multigpu_findings(
    box: Topology, launch: Launch, nccl: NcclLibrary, env: Mapping[str, str]
) -> list[Finding]:
    """Planner findings for ``launch`` on ``box`` (none for a one-GPU launch)."""
    return [
        Finding(SEVERITY[i.severity], AREA, i.line(), i.flag, i.env)
        for i in diagnose(box, layout_of(launch), nccl, env)
    ]
