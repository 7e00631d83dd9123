"""Known GPUs, so decisions can be computed for a GPU that is not present.

Names are spelled as ``torch.cuda.get_device_name()`` reports them (and so as
they appear in SGLang/vLLM fused-MoE config file names). Shared memory per
block is the opt-in limit (``cudaDevAttrMaxSharedMemoryPerBlockOptin``) that
Triton checks a kernel against; SM count, memory and bandwidth are the
vendors' published figures. Memory is the marketed size in GiB, a little
more than the card reports (nvidia-smi's total is a few hundred MiB less);
a card sold with two memory sizes under one name (RTX 4060 Ti, RTX 5060 Ti,
RTX A2000) is listed with the smaller one. The memory planner takes the live
GPU's figure, or ``--gpu-mem``, where that matters.
"""

from __future__ import annotations

import difflib
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
    # Ampere consumer (sm_86)
    _gpu("NVIDIA GeForce RTX 3050", (8, 6), 20, 8, 224),
    _gpu("NVIDIA GeForce RTX 3060", (8, 6), 28, 12, 360),
    _gpu("NVIDIA GeForce RTX 3060 Ti", (8, 6), 38, 8, 448),
    _gpu("NVIDIA GeForce RTX 3070", (8, 6), 46, 8, 448),
    _gpu("NVIDIA GeForce RTX 3070 Ti", (8, 6), 48, 8, 608),
    _gpu("NVIDIA GeForce RTX 3080", (8, 6), 68, 10, 760),
    _gpu("NVIDIA GeForce RTX 3080 Ti", (8, 6), 80, 12, 912),
    _gpu("NVIDIA GeForce RTX 3090", (8, 6), 82, 24, 936),
    _gpu("NVIDIA GeForce RTX 3090 Ti", (8, 6), 84, 24, 1008),
    # Ampere workstation and data center (sm_86)
    _gpu("NVIDIA RTX A2000", (8, 6), 26, 6, 288),
    _gpu("NVIDIA RTX A4000", (8, 6), 48, 16, 448),
    _gpu("NVIDIA RTX A4500", (8, 6), 56, 20, 640),
    _gpu("NVIDIA RTX A5000", (8, 6), 64, 24, 768),
    _gpu("NVIDIA RTX A5500", (8, 6), 80, 24, 768),
    _gpu("NVIDIA RTX A6000", (8, 6), 84, 48, 768),
    _gpu("NVIDIA A2", (8, 6), 10, 16, 200),
    _gpu("NVIDIA A10", (8, 6), 72, 24, 600),
    _gpu("NVIDIA A40", (8, 6), 84, 48, 696),
    # Ada consumer (sm_89)
    _gpu("NVIDIA GeForce RTX 4060", (8, 9), 24, 8, 272),
    _gpu("NVIDIA GeForce RTX 4060 Ti", (8, 9), 34, 8, 288),
    _gpu("NVIDIA GeForce RTX 4070", (8, 9), 46, 12, 504),
    _gpu("NVIDIA GeForce RTX 4070 SUPER", (8, 9), 56, 12, 504),
    _gpu("NVIDIA GeForce RTX 4070 Ti", (8, 9), 60, 12, 504),
    _gpu("NVIDIA GeForce RTX 4070 Ti SUPER", (8, 9), 66, 16, 672),
    _gpu("NVIDIA GeForce RTX 4080", (8, 9), 76, 16, 717),
    _gpu("NVIDIA GeForce RTX 4080 SUPER", (8, 9), 80, 16, 736),
    _gpu("NVIDIA GeForce RTX 4090", (8, 9), 128, 24, 1008),
    _gpu("NVIDIA GeForce RTX 4090 D", (8, 9), 114, 24, 1008),
    # Ada workstation and data center (sm_89)
    _gpu("NVIDIA RTX 2000 Ada Generation", (8, 9), 22, 16, 224),
    _gpu("NVIDIA RTX 4000 SFF Ada Generation", (8, 9), 48, 20, 280),
    _gpu("NVIDIA RTX 4000 Ada Generation", (8, 9), 48, 20, 360),
    _gpu("NVIDIA RTX 4500 Ada Generation", (8, 9), 60, 24, 432),
    _gpu("NVIDIA RTX 5000 Ada Generation", (8, 9), 100, 32, 576),
    _gpu("NVIDIA RTX 6000 Ada Generation", (8, 9), 142, 48, 960),
    _gpu("NVIDIA L4", (8, 9), 58, 24, 300),
    _gpu("NVIDIA L20", (8, 9), 92, 48, 864),
    _gpu("NVIDIA L40", (8, 9), 142, 48, 864),
    _gpu("NVIDIA L40S", (8, 9), 142, 48, 864),
    # Blackwell consumer (sm_120)
    _gpu("NVIDIA GeForce RTX 5060", (12, 0), 30, 8, 448),
    _gpu("NVIDIA GeForce RTX 5060 Ti", (12, 0), 36, 8, 448),
    _gpu("NVIDIA GeForce RTX 5070", (12, 0), 48, 12, 672),
    _gpu("NVIDIA GeForce RTX 5070 Ti", (12, 0), 70, 16, 896),
    _gpu("NVIDIA GeForce RTX 5080", (12, 0), 84, 16, 960),
    _gpu("NVIDIA GeForce RTX 5090", (12, 0), 170, 32, 1792),
    # Blackwell workstation (sm_120)
    _gpu("NVIDIA RTX PRO 4000 Blackwell", (12, 0), 70, 24, 672),
    _gpu("NVIDIA RTX PRO 4500 Blackwell", (12, 0), 82, 32, 896),
    _gpu("NVIDIA RTX PRO 5000 Blackwell", (12, 0), 110, 48, 1344),
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

#: Words users type or leave out that do not tell GPUs apart.
_FILLER = {"nvidia", "geforce"}


def _normalise(name: str) -> str:
    """Lower case, separators as single spaces, ``NVIDIA``/``GeForce`` dropped,
    letters and digits split (``RTX4090`` -> ``rtx 4090``, ``4090D`` -> ``4090 d``)."""
    s = re.sub(r"[\s_\-]+", " ", name.strip().lower())
    s = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", s)
    return " ".join(w for w in s.split() if w not in _FILLER)


_BY_KEY = {_normalise(g.name): g for g in KNOWN_GPUS}


def known_gpu_names() -> list[str]:
    return [g.name for g in KNOWN_GPUS]


def closest_gpu_names(name: str, n: int = 4) -> list[str]:
    """Catalog names nearest to what the user typed (for "did you mean")."""
    key = _normalise(name)
    words = set(key.split())
    shared = sorted(
        (g for k, g in _BY_KEY.items() if words & set(k.split()) - {"rtx", "pro", "ti", "super", "ada"}),
        key=lambda g: -difflib.SequenceMatcher(None, key, _normalise(g.name)).ratio(),
    )
    close = [_BY_KEY[k] for k in difflib.get_close_matches(key, list(_BY_KEY), n=n, cutoff=0.5)]
    out: list[str] = []
    for g in [*close, *shared]:
        if g.name not in out:
            out.append(g.name)
    return out[:n]


def find_gpu(name: str) -> GpuSpec:
    """Resolve a user-typed GPU name to a spec.

    Accepts the torch name in any case and spacing, with or without "NVIDIA"
    and "GeForce" (``RTX4090``, ``nvidia rtx 4090``), the underscore form used
    in config file names, a unique fragment ("4090", "L40S"), or an arch
    ("sm_89") for a generic spec. Raises ``ValueError`` naming the closest
    known GPUs when nothing (or more than one GPU) matches.
    """
    key = _normalise(name)
    if not key:
        raise ValueError("empty GPU name")
    arch = re.fullmatch(r"sm ?(\d+)(\d)", key)
    if arch:
        return GpuSpec.for_arch(int(arch.group(1)), int(arch.group(2)))
    if key in _BY_KEY:
        return _BY_KEY[key]
    # A fragment matching on word boundaries: "4090" -> RTX 4090, not RTX 4090 D.
    pattern = re.compile(rf"(^|\s){re.escape(key)}($|\s)")
    hits = [g for k, g in _BY_KEY.items() if pattern.search(k)]
    if len(hits) > 1:  # "RTX 3090" names the 3090, not the 3090 Ti
        tail = [g for k, g in _BY_KEY.items() if k.endswith(" " + key)]
        hits = tail if len(tail) == 1 else hits
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        more = f" and {len(hits) - 6} more" if len(hits) > 6 else ""
        listed = ", ".join(g.name for g in hits[:6])
        raise ValueError(f"GPU name {name!r} is ambiguous; it matches {listed}{more}: give more of the name")
    close = closest_gpu_names(name)
    hint = f"closest known: {', '.join(close)}" if close else "no known GPU is close"
    raise ValueError(
        f"unknown GPU {name!r} ({hint}); give a name as nvidia-smi prints it, or an arch such as sm_89"
    )
