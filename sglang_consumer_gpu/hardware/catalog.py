"""Known GPUs, so decisions can be computed for a GPU that is not present.

Names are spelled as ``torch.cuda.get_device_name()`` reports them (and so as
they appear in SGLang/vLLM fused-MoE config file names). Shared memory per
block is the opt-in limit (``cudaDevAttrMaxSharedMemoryPerBlockOptin``) that
Triton checks a kernel against; SM count, memory and bandwidth are the
vendors' published figures.
"""

from __future__ import annotations

import re

from sglang_consumer_gpu.hardware.spec import SMEM_OPTIN_BY_ARCH, GpuSpec

_GIB = 1024**3


def _gpu(name: str, cap: tuple[int, int], sms: int, mem_gib: float, bw_gbps: float) -> GpuSpec:
    return GpuSpec(
        name=name,
        capability=cap,
        smem_per_block_optin=SMEM_OPTIN_BY_ARCH[cap],
        sm_count=sms,
        memory_bytes=int(mem_gib * _GIB),
        memory_bandwidth_gbps=bw_gbps,
        source="catalog",
    )


KNOWN_GPUS: tuple[GpuSpec, ...] = (
    # Turing
    _gpu("Tesla T4", (7, 5), 40, 16, 320),
    # Ampere, consumer and workstation (sm_86)
    _gpu("NVIDIA GeForce RTX 3080", (8, 6), 68, 10, 760),
    _gpu("NVIDIA GeForce RTX 3090", (8, 6), 82, 24, 936),
    _gpu("NVIDIA GeForce RTX 3090 Ti", (8, 6), 84, 24, 1008),
    _gpu("NVIDIA A10", (8, 6), 72, 24, 600),
    _gpu("NVIDIA A40", (8, 6), 84, 48, 696),
    _gpu("NVIDIA RTX A6000", (8, 6), 84, 48, 768),
    # Ada (sm_89)
    _gpu("NVIDIA GeForce RTX 4070 Ti SUPER", (8, 9), 66, 16, 672),
    _gpu("NVIDIA GeForce RTX 4080", (8, 9), 76, 16, 717),
    _gpu("NVIDIA GeForce RTX 4080 SUPER", (8, 9), 80, 16, 736),
    _gpu("NVIDIA GeForce RTX 4090", (8, 9), 128, 24, 1008),
    _gpu("NVIDIA L4", (8, 9), 58, 24, 300),
    _gpu("NVIDIA L40", (8, 9), 142, 48, 864),
    _gpu("NVIDIA L40S", (8, 9), 142, 48, 864),
    _gpu("NVIDIA RTX 4000 Ada Generation", (8, 9), 48, 20, 360),
    _gpu("NVIDIA RTX 5000 Ada Generation", (8, 9), 100, 32, 576),
    _gpu("NVIDIA RTX 6000 Ada Generation", (8, 9), 142, 48, 960),
    # Blackwell consumer/workstation (sm_120)
    _gpu("NVIDIA GeForce RTX 5080", (12, 0), 84, 16, 960),
    _gpu("NVIDIA GeForce RTX 5090", (12, 0), 170, 32, 1792),
    _gpu("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", (12, 0), 188, 96, 1792),
    _gpu("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", (12, 0), 188, 96, 1792),
    _gpu("NVIDIA RTX PRO 6000 Blackwell Server Edition", (12, 0), 188, 96, 1597),
    # Data-center GPUs, for contrast
    _gpu("NVIDIA A100-SXM4-40GB", (8, 0), 108, 40, 1555),
    _gpu("NVIDIA A100-SXM4-80GB", (8, 0), 108, 80, 2039),
    _gpu("NVIDIA A100 80GB PCIe", (8, 0), 108, 80, 1935),
    _gpu("NVIDIA H100 80GB HBM3", (9, 0), 132, 80, 3350),
    _gpu("NVIDIA H100 PCIe", (9, 0), 114, 80, 2000),
    _gpu("NVIDIA H200", (9, 0), 132, 141, 4800),
)

_BY_KEY = {re.sub(r"[\s_]+", " ", g.name).lower(): g for g in KNOWN_GPUS}


def known_gpu_names() -> list[str]:
    return [g.name for g in KNOWN_GPUS]


def _normalise(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name).strip().lower()


def find_gpu(name: str) -> GpuSpec:
    """Resolve a user-typed GPU name to a spec.

    Accepts the exact torch name, the underscore form used in config file
    names, a unique case-insensitive fragment ("4090", "L40S"), or an arch
    ("sm_89") for a generic spec. Raises ``ValueError`` with the list of known
    names when nothing (or more than one thing) matches.
    """
    key = _normalise(name)
    if not key:
        raise ValueError("empty GPU name")
    arch = re.fullmatch(r"sm[ _]?(\d+)(\d)", key)
    if arch:
        return GpuSpec.for_arch(int(arch.group(1)), int(arch.group(2)))
    if key in _BY_KEY:
        return _BY_KEY[key]
    # A fragment matching on word boundaries: "4090" -> RTX 4090, not RTX 4090 Ti.
    pattern = re.compile(rf"(^|\s){re.escape(key)}($|\s)")
    hits = [g for k, g in _BY_KEY.items() if pattern.search(k)]
    if len(hits) > 1:  # "RTX 3090" names the 3090, not the 3090 Ti
        tail = [g for k, g in _BY_KEY.items() if k.endswith(" " + key)]
        hits = tail or hits
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ValueError(f"GPU name {name!r} is ambiguous; it matches: " + ", ".join(g.name for g in hits))
    raise ValueError(
        f"unknown GPU {name!r}. Use one of: {', '.join(known_gpu_names())}; or an arch such as sm_89."
    )
