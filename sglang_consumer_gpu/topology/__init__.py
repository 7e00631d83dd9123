"""Multi-GPU boxes: how the GPUs are linked, whether their memory is balanced, which NCCL
runs them, and what SGLang's start-up does with that (docs/multigpu.md).

:mod:`.model` is the data, :mod:`.diagnose` the decisions (pure: tests build topologies by
hand), :mod:`.nvml` and :mod:`.nccl` the thin readers of the live box (NVML and the NCCL
library file; no CUDA context, no torch import), :mod:`.assumed` the box a ``--gpu NAME
--gpus N`` question is about.
"""

from sglang_consumer_gpu.topology.assumed import assumed_topology
from sglang_consumer_gpu.topology.diagnose import FAIL, INFO, RISK, Issue, Layout, diagnose
from sglang_consumer_gpu.topology.model import GpuInfo, NcclLibrary, PeerLink, Topology
from sglang_consumer_gpu.topology.nccl import installed_nccl
from sglang_consumer_gpu.topology.nvml import read_topology

__all__ = [
    "FAIL",
    "INFO",
    "RISK",
    "GpuInfo",
    "Issue",
    "Layout",
    "NcclLibrary",
    "PeerLink",
    "Topology",
    "assumed_topology",
    "diagnose",
    "installed_nccl",
    "read_topology",
]
