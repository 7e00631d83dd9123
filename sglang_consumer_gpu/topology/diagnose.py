"""What goes wrong when SGLang starts on several GPUs of this box, and what to do. Pure.

Each check follows what SGLang 0.5.23 itself does at start-up (docs/multigpu.md quotes the
code), so the answer names SGLang's own message:

- memory balance: ``distributed/bootstrap.py::_check_tp_memory_balance`` raises
  "The memory capacity is unbalanced" when, with ``--tp`` > 1, the smallest free memory of
  the launch's GPUs is below 0.9 x a GPU's own (unless ``SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK``
  is false);
- custom all-reduce: ``custom_all_reduce_utils.can_use_custom_all_reduce_with_nvlink`` turns
  it off for world sizes other than 2/4/6/8 and for more than two GPUs not all linked by
  NVLink; for two GPUs it trusts peer access without testing it (``--enable-p2p-check`` is
  off by default: ``monkey_patch_p2p_access_check``), and when CUDA IPC then fails,
  ``GroupCoordinator`` catches it, warns and uses NCCL;
- NCCL: the version the box loads against what the GPUs' architecture needs (:mod:`.nccl`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sglang_consumer_gpu.topology.model import GIB, GpuInfo, NcclLibrary, Topology
from sglang_consumer_gpu.topology.nccl import SO_PATH_ENV, nccl_need, older

FAIL, RISK, INFO = "fail", "risk", "info"
#: SGLang's threshold: the smallest free memory must be at least this share of each GPU's own.
SGLANG_BALANCE = 0.9
#: Closer than this to SGLang's line counts as at risk: CUDA contexts and NCCL take a few hundred
#: MB per GPU before SGLang measures, which moves the ratio.
NEAR_BALANCE = 0.93
MEMORY_CHECK_ENV = "SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK"
#: SGLang's switch for its custom all-reduce (NCCL then does every all-reduce).
DISABLE_CUSTOM_AR = "--disable-custom-all-reduce"
#: ``CustomAllreduce._SUPPORTED_WORLD_SIZES`` in SGLang 0.5.23.
CUSTOM_AR_SIZES = (2, 4, 6, 8)
_FALSE = ("false", "0", "no", "n")  # SGLang's EnvBool


@dataclass(frozen=True)
class Issue:
    """One thing the box does to a multi-GPU launch, and what to do about it."""

    severity: str  # FAIL, RISK or INFO
    area: str
    text: str
    fix: str = ""  # what to do, in words
    flag: tuple[str, str] | None = None  # the launch flag that does it ("" value: a switch), if one does
    env: tuple[str, str] | None = None  # the environment variable that does it, if one does

    def line(self) -> str:
        return self.text + (f". What to do: {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "area": self.area, "text": self.text, "fix": self.fix}


@dataclass(frozen=True)
class Layout:
    """The part of a launch that decides which GPUs talk to which. Rank placement is SGLang's
    default (``--base-gpu-id 0 --gpu-id-step 1``): replica r, pipeline stage s, TP rank t on
    GPU ``(r * pp + s) * tp + t`` of its node."""

    tp: int = 1
    pp: int = 1
    dp: int = 1  # replicas, each its own torch.distributed world
    nnodes: int = 1
    custom_all_reduce: bool = True  # False under --disable-custom-all-reduce (as SGLang resolved it)
    p2p_check: bool = False  # --enable-p2p-check

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def per_node(self) -> int:
        return max(1, self.world // max(1, self.nnodes))

    def replicas(self) -> list[tuple[int, ...]]:
        """GPU positions on this node of each torch.distributed world (SGLang's balance check spans one)."""
        if self.nnodes > 1:
            return [tuple(range(self.per_node))]
        size = self.tp * self.pp
        return [tuple(range(r * size, (r + 1) * size)) for r in range(self.dp)]

    def tp_groups(self) -> list[tuple[int, ...]]:
        """GPU positions of each TP group held by this node (none when TP spans nodes)."""
        if self.tp > self.per_node:
            return []
        stages = self.per_node // self.tp
        return [tuple(range(s * self.tp, (s + 1) * self.tp)) for s in range(stages)]


def _on(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None else value.strip().lower() not in _FALSE


def _gib(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def _names(gpus: list[GpuInfo]) -> str:
    return "+".join(str(g.index) for g in gpus)


def _present(topo: Topology, group: tuple[int, ...]) -> tuple[int, ...]:
    """The positions of ``group`` this box has (the planner says when a launch wants more GPUs)."""
    return tuple(i for i in group if i < len(topo.gpus))


def _members(topo: Topology, group: tuple[int, ...]) -> list[GpuInfo]:
    return [topo.gpus[i] for i in _present(topo, group)]


def memory_balance(topo: Topology, layout: Layout, env: Mapping[str, str]) -> list[Issue]:
    """SGLang's start-up check that the GPUs of a TP launch have about the same free memory."""
    if layout.tp <= 1:
        return []
    raises = _on(env, MEMORY_CHECK_ENV, True)
    out: list[Issue] = []
    for group in layout.replicas():
        gpus = _members(topo, group)
        if len(gpus) < 2:
            continue
        free = {g.index: g.memory_free if g.memory_free is not None else g.memory_total for g in gpus}
        low = min(gpus, key=lambda g: free[g.index])
        high = max(gpus, key=lambda g: free[g.index])
        ratio = free[low.index] / free[high.index] if free[high.index] else 1.0
        if ratio >= NEAR_BALANCE:
            continue
        who = f" (in use by {', '.join(low.processes)})" if low.processes else ""
        numbers = f"GPU {low.index} has {_gib(free[low.index])} free{who}, GPU {high.index} has {_gib(free[high.index])}"
        if ratio >= SGLANG_BALANCE:
            if not raises:
                continue
            out.append(
                Issue(
                    RISK,
                    "memory",
                    f"free memory is {ratio:.3f} of the freest GPU's, just above SGLang's line ({SGLANG_BALANCE}): "
                    f"{numbers}; CUDA contexts and NCCL take a few hundred MB per GPU before SGLang measures",
                    "free some memory on the fuller GPU before launching",
                )
            )
            continue
        quote = (
            'SGLang raises "The memory capacity is unbalanced. Some GPUs may be occupied by other processes." '
            f"at start-up: {numbers}, below {SGLANG_BALANCE} x {_gib(free[high.index])} = "
            f"{_gib(SGLANG_BALANCE * free[high.index])}"
        )
        fix = (
            f"free GPU {low.index} or leave it out with CUDA_VISIBLE_DEVICES; or set {MEMORY_CHECK_ENV}=0, "
            f"and SGLang only warns and sizes every GPU's KV cache by the smallest free memory"
        )
        if raises:
            out.append(Issue(FAIL, "memory", quote, fix, env=(MEMORY_CHECK_ENV, "0")))
        else:
            out.append(
                Issue(
                    INFO,
                    "memory",
                    f"{numbers}: with {MEMORY_CHECK_ENV}={env.get(MEMORY_CHECK_ENV)} SGLang warns that the memory "
                    "capacity is unbalanced and sizes every GPU's KV cache by the smallest free memory",
                )
            )
    return out


def custom_all_reduce(topo: Topology, layout: Layout) -> list[Issue]:
    """What SGLang's custom all-reduce does on each TP group of this box."""
    if not layout.custom_all_reduce:
        return []
    out: list[Issue] = []
    for group in layout.tp_groups():
        gpus = _members(topo, group)
        n = len(gpus)
        if n < 2:
            continue
        where = f"GPUs {_names(gpus)}"
        if n not in CUSTOM_AR_SIZES:
            out.append(
                Issue(
                    INFO,
                    "all-reduce",
                    f"SGLang turns custom all-reduce off for a TP group of {n} (it supports {CUSTOM_AR_SIZES}); "
                    "all-reduce runs on NCCL",
                )
            )
            continue
        links = topo.pairs(_present(topo, group))
        if links and all(link is not None and link.nvlink for link in links):
            continue  # custom all-reduce over NVLink: what it is built for
        if n > 2:
            out.append(
                Issue(
                    INFO,
                    "all-reduce",
                    f'{where} are not all linked by NVLink: SGLang turns custom all-reduce off itself ("not supported '
                    'on more than two PCIe-only GPUs") and all-reduce runs on NCCL',
                )
            )
            continue
        link = links[0]
        peer = link.peer_access if link is not None else None
        geforce = [g for g in gpus if "GeForce" in g.spec.name]
        if peer is False and layout.p2p_check:
            out.append(
                Issue(
                    INFO,
                    "all-reduce",
                    f"{where}: SGLang's peer-to-peer test (--enable-p2p-check) finds no peer access and all-reduce runs on NCCL",
                )
            )
        elif peer is False:
            out.append(
                Issue(
                    INFO,
                    "all-reduce",
                    f"{where} have no peer access: SGLang does not test it (--enable-p2p-check is off by default), so "
                    'custom all-reduce tries CUDA IPC, fails with "CUDART error: peer access is not supported between '
                    'these two devices", and SGLang logs "Setup Custom allreduce failed with ..." and runs all-reduce '
                    "on NCCL; the launch goes on",
                    "nothing needed; --disable-custom-all-reduce skips the attempt and its warning",
                    flag=(DISABLE_CUSTOM_AR, ""),
                )
            )
        elif peer is True and geforce:
            out.append(
                Issue(
                    RISK,
                    "all-reduce",
                    f"{where} are GeForce cards with peer access over PCIe, which NVIDIA's driver does not give them "
                    "(a patched driver?): SGLang runs its custom all-reduce over it; vLLM's, from which SGLang's is "
                    "derived, returned wrong tokens on two RTX 3090s with such a driver while NCCL over the same link "
                    "was right (noonghunna/club-3090#922)",
                    "if answers come out garbled, relaunch with --disable-custom-all-reduce (NCCL keeps the peer-to-peer speed-up)",
                    flag=(DISABLE_CUSTOM_AR, ""),
                )
            )
        elif peer is None:
            out.append(
                Issue(
                    INFO,
                    "all-reduce",
                    f"peer access between {where} is unknown: with it, SGLang's custom all-reduce runs over PCIe; "
                    "without it, custom all-reduce fails to start and SGLang falls back to NCCL with a warning",
                )
            )
    return _unique(out)


def nccl_version(lib: NcclLibrary, topo: Topology, layout: Layout) -> list[Issue]:
    """The NCCL this box loads against what its GPUs' architecture needs (NCCL runs every multi-GPU launch)."""
    if layout.world <= 1:
        return []
    out: list[Issue] = []
    seen: set[int] = set()
    for g in _members(topo, tuple(range(layout.per_node))):
        need = nccl_need(g.spec)
        if need is None or g.spec.capability[0] in seen:
            continue
        seen.add(g.spec.capability[0])
        arch = f"{g.spec.arch_name} ({g.spec.name})"
        if lib.origin.startswith(SO_PATH_ENV):
            upgrade = f"point {SO_PATH_ENV} at an NCCL >= {need.recommended}"
        else:
            upgrade = (
                f'pip install -U "{lib.wheel or "nvidia-nccl-cu12"}>={need.recommended}" (pip warns that torch pins another version; '
                "torch and SGLang load the newer library all the same, sgl-project/sglang#7227)"
            )
        if lib.version is None:
            out.append(
                Issue(
                    INFO,
                    "nccl",
                    f"could not read the NCCL version ({lib.origin}); {arch} needs NCCL >= {need.minimum}",
                    "check with python -c 'import torch; print(torch.cuda.nccl.version())'",
                )
            )
        elif older(lib.version, need.minimum):
            out.append(
                Issue(FAIL, "nccl", f"{lib.describe()} is too old for {arch}: {need.why_minimum}", upgrade)
            )
        elif older(lib.version, need.recommended):
            out.append(Issue(RISK, "nccl", f"{lib.describe()} on {arch}: {need.why_recommended}", upgrade))
        if lib.version is not None and lib.cuda and older(lib.cuda, need.minimum_cuda):
            out.append(
                Issue(
                    INFO,
                    "nccl",
                    f"{lib.describe()} was built with CUDA {lib.cuda}, before {g.spec.arch_name} code could be built "
                    f"(CUDA {need.minimum_cuda}): the driver compiles NCCL's PTX for it when NCCL starts",
                )
            )
    return out


def pcie_p2p_hangs(topo: Topology, layout: Layout, env: Mapping[str, str]) -> list[Issue]:
    """NCCL's peer-to-peer over PCIe where the IOMMU sits in the path: the NCCL_P2P_DISABLE=1 class of hangs."""
    if layout.world <= 1 or topo.iommu != "on" or _on(env, "NCCL_P2P_DISABLE", False):
        return []
    used = _present(topo, tuple(range(layout.per_node)))
    if not any(link is not None and link.peer_access and not link.nvlink for link in topo.pairs(used)):
        return []
    return [
        Issue(
            INFO,
            "nccl",
            "NCCL will use peer-to-peer over PCIe, and the IOMMU is on (not passthrough): where it or PCIe ACS "
            "redirects peer traffic, NCCL hangs at start-up or at the first all-reduce (NCCL's troubleshooting "
            "guide, 'PCI Access Control Services')",
            "if it hangs, relaunch with NCCL_P2P_DISABLE=1 (NCCL then goes through host shared memory), or boot with "
            "iommu=pt",
        )
    ]


def mixed_gpus(topo: Topology, layout: Layout) -> list[Issue]:
    """GPUs of different models in one launch."""
    gpus = _members(topo, tuple(range(layout.per_node)))
    names = sorted({f"{g.spec.name} ({g.spec.arch_name})" for g in gpus})
    if layout.world <= 1 or len(names) < 2:
        return []
    return [
        Issue(
            INFO,
            "mixed GPUs",
            f"the GPUs differ ({', '.join(names)}): SGLang starts every rank with one configuration, so the launch "
            "must suit each (fp8 e4m3 needs sm_89 or newer); CUDA numbers GPUs fastest first, so set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID for CUDA_VISIBLE_DEVICES to mean the numbers shown here",
        )
    ]


def diagnose(topo: Topology, layout: Layout, nccl: NcclLibrary, env: Mapping[str, str]) -> list[Issue]:
    """Every issue of ``layout`` on ``topo`` with ``nccl`` installed, worst first."""
    if layout.world <= 1:
        return []
    found = (
        memory_balance(topo, layout, env)
        + nccl_version(nccl, topo, layout)
        + custom_all_reduce(topo, layout)
        + pcie_p2p_hangs(topo, layout, env)
        + mixed_gpus(topo, layout)
    )
    if topo.source == "assumed":
        found.append(Issue(INFO, "assumption", topo.assumption))
    rank = {FAIL: 0, RISK: 1, INFO: 2}
    return sorted(found, key=lambda i: rank[i.severity])


def _unique(issues: list[Issue]) -> list[Issue]:
    out: list[Issue] = []
    for issue in issues:
        if issue not in out:
            out.append(issue)
    return out
