"""What a multi-GPU box looks like to SGLang's distributed start-up, as plain data.

Filled by :mod:`.nvml` from the live GPUs, by :mod:`.assumed` for a box named on the
command line, or by a test; every decision in :mod:`.diagnose` reads only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec

GIB = 1024**3

#: ``nvmlDeviceGetTopologyCommonAncestor`` levels in ``nvidia-smi topo -m``'s words: how far
#: apart two GPUs sit on the PCIe tree (the path peer-to-peer traffic takes without NVLink).
PCIE_PATHS: dict[int, str] = {
    0: "BOARD",  # two GPUs on one board
    10: "PIX",  # one PCIe switch
    20: "PXB",  # several PCIe switches, no host bridge
    30: "PHB",  # through the CPU's PCIe host bridge
    40: "NODE",  # between host bridges of one NUMA node
    50: "SYS",  # across CPU sockets (QPI/UPI/xGMI)
}
PATH_WORDS: dict[str, str] = {
    "BOARD": "on one board",
    "PIX": "behind one PCIe switch",
    "PXB": "behind several PCIe switches",
    "PHB": "through the CPU's PCIe host bridge",
    "NODE": "between PCIe host bridges of one CPU",
    "SYS": "across CPU sockets",
}


@dataclass(frozen=True)
class GpuInfo:
    """One GPU of the box."""

    #: NVML index (PCI bus order): what CUDA_VISIBLE_DEVICES names under CUDA_DEVICE_ORDER=PCI_BUS_ID
    index: int
    spec: GpuSpec
    memory_total: int  # bytes
    memory_free: int | None = None  # bytes; None where nobody measured it (an assumed box)
    bus_id: str = ""
    processes: tuple[str, ...] = ()  # other programs holding memory on it, "name (1.2 GiB)"

    @property
    def label(self) -> str:
        return f"GPU {self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.spec.name,
            "arch": self.spec.arch_name,
            "memory_total": self.memory_total,
            "memory_free": self.memory_free,
            "bus_id": self.bus_id,
            "processes": list(self.processes),
        }


@dataclass(frozen=True)
class PeerLink:
    """How two GPUs (positions ``a`` < ``b`` in :attr:`Topology.gpus`) reach each other."""

    a: int
    b: int
    nvlink: bool  # NVML's NVLink peer-to-peer status is OK
    p2p_read: bool | None  # peer-to-peer reads / writes (None: unknown or assumed unknown)
    p2p_write: bool | None
    path: str | None = None  # PCIE_PATHS value; None when unknown
    nvlinks: int | None = None  # active NVLink links between the two (None: not counted, e.g. NVSwitch)
    why_not: str = ""  # NVML's reason when peer access is refused

    @property
    def peer_access(self) -> bool | None:
        """CUDA peer access both ways (what custom all-reduce's CUDA IPC needs)."""
        if self.nvlink:
            return True
        if self.p2p_read is None or self.p2p_write is None:
            return None
        return self.p2p_read and self.p2p_write

    def describe(self) -> str:
        if self.nvlink:
            count = f" x{self.nvlinks}" if self.nvlinks else ""
            return f"NVLink{count}"
        where = f" ({self.path}: {PATH_WORDS[self.path]})" if self.path in PATH_WORDS else ""
        return f"PCIe{where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [self.a, self.b],
            "link": "nvlink" if self.nvlink else "pcie",
            "nvlinks": self.nvlinks,
            "path": self.path,
            "p2p_read": self.p2p_read,
            "p2p_write": self.p2p_write,
            "peer_access": self.peer_access,
            "why_not": self.why_not,
        }


@dataclass(frozen=True)
class NcclLibrary:
    """The NCCL shared library a CUDA build of torch (and so SGLang) will load, read from disk."""

    version: str | None  # "2.27.3"
    cuda: str | None  # the CUDA it was built with, "12.8"
    path: str | None
    origin: str  # "nvidia-nccl-cu12 wheel", "SGLANG_NCCL_SO_PATH", ...
    torch_wants: str | None = None  # torch's own requirement, "nvidia-nccl-cu12==2.26.2"
    wheel: str | None = None  # the distribution that ships it, "nvidia-nccl-cu12"

    def describe(self) -> str:
        if self.version is None:
            return f"NCCL version unknown ({self.origin})"
        cuda = f"+cuda{self.cuda}" if self.cuda else ""
        return f"NCCL {self.version}{cuda} ({self.origin})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cuda": self.cuda,
            "path": self.path,
            "origin": self.origin,
            "torch_wants": self.torch_wants,
            "wheel": self.wheel,
        }


@dataclass(frozen=True)
class Topology:
    """The GPUs of one box and every pair's link."""

    gpus: tuple[GpuInfo, ...]
    links: tuple[PeerLink, ...] = ()
    source: str = "NVML"  # "NVML" (read from the driver) or "assumed"
    assumption: str = ""  # what was assumed and why, for an assumed box
    driver: str | None = None
    iommu: str | None = None  # "on", "passthrough", "off"; None: unknown

    def link(self, i: int, j: int) -> PeerLink | None:
        """The link between positions ``i`` and ``j`` (either order)."""
        a, b = min(i, j), max(i, j)
        return next((link for link in self.links if (link.a, link.b) == (a, b)), None)

    def pairs(self, members: tuple[int, ...]) -> list[PeerLink | None]:
        """The links between every two of ``members`` (positions)."""
        return [self.link(i, j) for n, i in enumerate(members) for j in members[n + 1 :]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "assumption": self.assumption,
            "driver": self.driver,
            "iommu": self.iommu,
            "gpus": [g.to_dict() for g in self.gpus],
            "links": [link.to_dict() for link in self.links],
        }
