"""The box ``doctor --model --gpu NAME --gpus N`` asks about: N of one GPU, linked the way
that kind of GPU is in NVIDIA's own driver. Said as an assumption wherever it is used;
``doctor`` on the box itself reads the real links (:mod:`.nvml`).
"""

from __future__ import annotations

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.topology.model import GpuInfo, PeerLink, Topology

#: Why a GeForce box is taken to have no peer access (docs/multigpu.md has the sources).
GEFORCE_NO_P2P = "NVIDIA's driver gives GeForce cards none over PCIe"


def _nvswitch_board(spec: GpuSpec) -> bool:
    """SXM data-center GPUs, which sit on NVSwitch boards (every pair linked)."""
    return "SXM" in spec.name or "HBM3" in spec.name or spec.name == "NVIDIA H200"


def assumed_link(spec: GpuSpec) -> tuple[bool, bool | None, str]:
    """(NVLink, peer access, in words) for two ``spec`` GPUs in one box, as NVIDIA's driver has them."""
    if "GeForce" in spec.name:
        return (
            False,
            False,
            f"PCIe without peer-to-peer ({GEFORCE_NO_P2P}; an NVLink bridge on two RTX 3090s or a patched "
            "driver would give it)",
        )
    if _nvswitch_board(spec):
        return True, True, "NVLink (an NVSwitch board)"
    if spec.source == "arch":
        return False, None, "PCIe, peer access unknown for a generic architecture"
    return (
        False,
        True,
        "PCIe with peer-to-peer (workstation and data-center cards have it in NVIDIA's driver; an IOMMU, "
        "PCIe ACS or a path across CPU sockets can still block it)",
    )


def assumed_topology(spec: GpuSpec, count: int) -> Topology:
    """``count`` GPUs of one kind, equally free, every pair linked as :func:`assumed_link` says."""
    nvlink, peer, words = assumed_link(spec)
    gpus = tuple(GpuInfo(i, spec, spec.memory_bytes) for i in range(count))
    links = tuple(
        PeerLink(a, b, nvlink=nvlink, p2p_read=peer, p2p_write=peer)
        for a in range(count)
        for b in range(a + 1, count)
    )
    return Topology(
        gpus,
        links,
        source="assumed",
        assumption=(
            f"assumed: {count} x {spec.name} over {words}, no other program holding GPU memory; "
            "`sglang-consumer-gpu doctor` on the machine reads its real links (docs/multigpu.md)"
        ),
    )
