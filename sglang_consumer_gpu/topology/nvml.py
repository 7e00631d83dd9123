"""Read the live box from NVML: which GPUs, how each pair is linked, how much memory is free.

NVML, not torch.cuda: the plugin runs in SGLang's launcher process, which forks or spawns
its workers later, and a CUDA context made there breaks fork-based start-up
(:mod:`sglang_consumer_gpu.hardware.current` reads the live spec the same way). NVML also
answers the questions CUDA does not: the PCIe path between two GPUs and NVML's own reason
when peer access is refused. Every query that fails leaves its field unknown; only a
missing driver makes the whole answer None.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.current import real_specs, visible_indices
from sglang_consumer_gpu.hardware.spec import SMEM_OPTIN_BY_ARCH, GpuSpec
from sglang_consumer_gpu.topology.model import GIB, PCIE_PATHS, GpuInfo, PeerLink, Topology

logger = logging.getLogger(__name__)

# nvmlGpuP2PCapsIndex_t (nvml.h). nvidia-ml-py spells NVML_P2P_CAPS_INDEX_READ as the tuple
# ``(0,)`` (a stray comma), which ctypes refuses, so the indices are written out here.
P2P_READ, P2P_WRITE, P2P_NVLINK = 0, 1, 2
#: nvmlGpuP2PStatus_t values other than OK, as NVML means them.
P2P_REFUSALS = {
    1: "the chipset does not support it",
    2: "the GPU does not support it",
    3: "the PCIe topology does not support it",
    4: "disabled by a driver registry key",
    5: "not supported",
    6: "unknown",
}
_NVLINK_LINKS = 18  # links per GPU on NVLink 4 (H100); newer pynvml knows more, older GPUs fewer


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _try(default: Any, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # NVMLError_NotSupported and friends: the field stays unknown
        logger.debug("NVML %s failed: %s", getattr(fn, "__name__", fn), exc)
        return default


def _process_names(nvml: Any, handle: Any) -> tuple[str, ...]:
    """Programs holding memory on the GPU, "name (1.2 GiB)" (names from /proc; a pid where hidden)."""
    out: list[str] = []
    for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for proc in _try([], getattr(nvml, query, lambda h: []), handle):
            pid = getattr(proc, "pid", None)
            name = _try(f"pid {pid}", lambda p: Path(f"/proc/{p}/comm").read_text().strip(), pid)
            used = getattr(proc, "usedGpuMemory", None)
            entry = f"{name} ({used / GIB:.1f} GiB)" if isinstance(used, int) and used > 0 else name
            if entry not in out:
                out.append(entry)
    return tuple(out)


def iommu_mode(root: Path = Path("/")) -> str | None:
    """The host's IOMMU: "on", "passthrough" or "off"; None where Linux does not say."""
    groups = root / "sys/kernel/iommu_groups"
    if not groups.is_dir():
        return None
    if not any(groups.iterdir()):
        return "off"
    cmdline = _try("", lambda: (root / "proc/cmdline").read_text())
    return "passthrough" if "iommu=pt" in cmdline or "iommu.passthrough=1" in cmdline else "on"


def _spec(name: str, cap: tuple[int, int], by_name: dict[str, GpuSpec]) -> GpuSpec:
    """The plugin's live spec of the GPU (hardware.current), or a bare one where it has none."""
    return by_name.get(name) or GpuSpec(name, cap, SMEM_OPTIN_BY_ARCH.get(cap, 0), 0, 0, 0.0, "live")


def _nvlink_counts(nvml: Any, handles: list[Any], buses: list[str]) -> dict[tuple[int, int], int]:
    """Active NVLink links between each two GPUs (NVSwitch links end at the switch and count for no pair)."""
    counts: dict[tuple[int, int], int] = {}
    where = {bus.lower(): i for i, bus in enumerate(buses) if bus}
    for i, h in enumerate(handles):
        for link in range(_NVLINK_LINKS):
            try:
                if not nvml.nvmlDeviceGetNvLinkState(h, link):
                    continue
                remote = _text(nvml.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId).lower()
            except Exception:
                break  # no NVLink on this GPU, or no more links
            j = where.get(remote)
            if j is not None and j > i:
                counts[(i, j)] = counts.get((i, j), 0) + 1
    return counts


def _link(nvml: Any, handles: list[Any], a: int, b: int, nvlinks: dict[tuple[int, int], int]) -> PeerLink:
    ha, hb = handles[a], handles[b]
    status = {
        idx: _try(None, nvml.nvmlDeviceGetP2PStatus, ha, hb, idx) for idx in (P2P_READ, P2P_WRITE, P2P_NVLINK)
    }
    read, write, nv = (
        None if status[i] is None else status[i] == 0 for i in (P2P_READ, P2P_WRITE, P2P_NVLINK)
    )
    refused = next((s for s in (status[P2P_READ], status[P2P_WRITE]) if s not in (None, 0)), None)
    level = _try(None, nvml.nvmlDeviceGetTopologyCommonAncestor, ha, hb)
    return PeerLink(
        a,
        b,
        nvlink=bool(nv),
        p2p_read=read,
        p2p_write=write,
        path=PCIE_PATHS.get(level) if level is not None else None,
        nvlinks=nvlinks.get((a, b)),
        why_not=P2P_REFUSALS.get(refused, "") if refused is not None else "",
    )


def read_topology() -> Topology | None:
    """The visible GPUs and their links, from NVML; None without an NVIDIA driver."""
    try:
        import pynvml  # nvidia-ml-py, an SGLang dependency

        pynvml.nvmlInit()
    except Exception as exc:
        logger.debug("NVML not usable (%s): no topology", exc)
        return None
    try:
        by_name = {s.name: s for s in real_specs()}
        indices = visible_indices(pynvml.nvmlDeviceGetCount())
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        gpus: list[GpuInfo] = []
        for i, h in zip(indices, handles, strict=True):
            name = _text(pynvml.nvmlDeviceGetName(h))
            cap = tuple(_try((0, 0), pynvml.nvmlDeviceGetCudaComputeCapability, h))
            mem = _try(None, pynvml.nvmlDeviceGetMemoryInfo, h)
            pci = _try(None, pynvml.nvmlDeviceGetPciInfo, h)
            gpus.append(
                GpuInfo(
                    index=i,
                    spec=_spec(name, (int(cap[0]), int(cap[1])), by_name),
                    memory_total=int(mem.total) if mem is not None else 0,
                    memory_free=int(mem.free) if mem is not None and hasattr(mem, "free") else None,
                    bus_id=_text(pci.busId) if pci is not None else "",
                    processes=_process_names(pynvml, h),
                )
            )
        nvlinks = _nvlink_counts(pynvml, handles, [g.bus_id for g in gpus]) if len(gpus) > 1 else {}
        links = tuple(
            _link(pynvml, handles, a, b, nvlinks) for a in range(len(gpus)) for b in range(a + 1, len(gpus))
        )
        driver = _try(None, pynvml.nvmlSystemGetDriverVersion)
        return Topology(
            tuple(gpus), links, "NVML", driver=_text(driver) if driver else None, iommu=iommu_mode()
        )
    except Exception as exc:  # a driver that answers the count but not the rest
        logger.debug("NVML topology read failed: %s", exc)
        return None
    finally:
        _try(None, pynvml.nvmlShutdown)
