"""Which published releases carry code for which GPUs: facts read from the real
wheels (``pip download --no-deps``, CPython 3.11 x86_64 manylinux tags, PyPI,
2026-12) with this package's own readers (``scripts/builds_release_facts.py``
repeats the reading). Each row says which wheel and which file it was read from.

``doctor`` reads the INSTALLED binaries for its verdict; this table only
answers "which version would fix it". A release not listed was not read: the
fix names the first release read that fits, which is what the table can prove.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from sglang_consumer_gpu.builds.compat import sass_runs_on
from sglang_consumer_gpu.builds.fatbin import Arch


@dataclass(frozen=True)
class Fact:
    """One file of one release wheel, and what was read from it."""

    dist: str
    version: str
    wheel: str
    file: str
    sass: str = ""  # cubin architectures, space-separated
    ptx: str = ""
    cuda: int | None = None  # CUDA major the library links (libcudart.so.N / libnvrtc.so.N)
    gpu_names: str = ""  # a ptxas: the sm_ values of `--gpu-name` in `ptxas --help`
    release: str = ""  # a ptxas: its CUDA release (`--version`)
    requires: str = ""  # METADATA: the Requires-Dist pins that matter here

    def archs(self) -> frozenset[Arch]:
        return frozenset(Arch.parse(a) for a in self.sass.split())

    def runs_on(self, capability: tuple[int, int]) -> bool:
        """A library row: one of its cubins runs on the GPU (PTX rows are listed where a wheel has PTX)."""
        return any(sass_runs_on(a, capability) for a in self.archs())

    def accepts(self, gpu_name: str) -> bool:
        return gpu_name in self.gpu_names.split()


_SGLK_OLD = "sm_75 sm_80 sm_89 sm_90 sm_90a"
_SGLK_09 = "sm_80 sm_89 sm_90 sm_90a sm_100a sm_101a sm_120a"
_SGLK_SPLIT = "sm_80 sm_89 sm_90 sm_90a sm_100a sm_120a"
_SGLK_CU13 = "sm_80 sm_89 sm_90 sm_90a sm_100a sm_103a sm_120a"
_PTXAS_124 = "sm_50 sm_52 sm_53 sm_60 sm_61 sm_62 sm_70 sm_72 sm_75 sm_80 sm_86 sm_87 sm_89 sm_90 sm_90a"
_PTXAS_128 = f"{_PTXAS_124} sm_100 sm_100a sm_101 sm_101a sm_120 sm_120a"
_ABI3 = "cp39-abi3-manylinux2014_x86_64.whl"
_ABI3_310 = "cp310-abi3-manylinux2014_x86_64.whl"
_TORCH = "cp311-cp311-manylinux_2_28_x86_64.whl"
_TRITON = "cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
_COMMON = "sgl_kernel/common_ops.abi3.so"
_SM100 = "sgl_kernel/sm100/common_ops.abi3.so"  # what sgl_kernel loads on every GPU but sm_90
_LIBTORCH = "torch/lib/libtorch_cuda.so"

FACTS: tuple[Fact, ...] = (
    # sgl-kernel (renamed sglang-kernel at 0.4.0): the common_ops library
    Fact("sgl-kernel", "0.1.0", f"sgl_kernel-0.1.0-{_ABI3}", _COMMON, _SGLK_OLD, cuda=12),
    Fact("sgl-kernel", "0.1.4", f"sgl_kernel-0.1.4-{_ABI3}", _COMMON, _SGLK_OLD, cuda=12),
    Fact("sgl-kernel", "0.1.9", f"sgl_kernel-0.1.9-{_ABI3}", _COMMON, _SGLK_OLD, cuda=12),
    Fact("sgl-kernel", "0.2.0", f"sgl_kernel-0.2.0-{_ABI3}", _COMMON, _SGLK_OLD, cuda=12),
    Fact("sgl-kernel", "0.2.5", f"sgl_kernel-0.2.5-{_ABI3}", _COMMON, _SGLK_OLD, cuda=12),
    Fact("sgl-kernel", "0.3.0", f"sgl_kernel-0.3.0-{_ABI3}", _COMMON, _SGLK_OLD, cuda=12),
    Fact("sgl-kernel", "0.3.5", f"sgl_kernel-0.3.5-{_ABI3_310}", _COMMON, _SGLK_OLD, cuda=12),
    Fact(
        "sgl-kernel", "0.3.8", f"sgl_kernel-0.3.8-{_ABI3_310}", _COMMON, "sm_80 sm_89 sm_90 sm_90a", cuda=12
    ),
    Fact("sgl-kernel", "0.3.9", f"sgl_kernel-0.3.9-{_ABI3_310}", _COMMON, _SGLK_09, cuda=12),
    Fact("sgl-kernel", "0.3.9.post1", f"sgl_kernel-0.3.9.post1-{_ABI3_310}", _COMMON, _SGLK_09, cuda=12),
    Fact("sgl-kernel", "0.3.9.post2", f"sgl_kernel-0.3.9.post2-{_ABI3_310}", _COMMON, _SGLK_09, cuda=12),
    Fact("sgl-kernel", "0.3.10", f"sgl_kernel-0.3.10-{_ABI3_310}", _COMMON, _SGLK_09, cuda=12),
    Fact("sgl-kernel", "0.3.21", f"sgl_kernel-0.3.21-{_ABI3_310}", _SM100, _SGLK_SPLIT, cuda=12),
    Fact("sglang-kernel", "0.4.0", f"sglang_kernel-0.4.0-{_ABI3_310}", _SM100, _SGLK_SPLIT, cuda=12),
    Fact("sglang-kernel", "0.4.1", f"sglang_kernel-0.4.1-{_ABI3_310}", _SM100, _SGLK_SPLIT, cuda=12),
    Fact("sglang-kernel", "0.4.2", f"sglang_kernel-0.4.2-{_ABI3_310}", _SM100, _SGLK_CU13, cuda=13),
    Fact("sglang-kernel", "0.4.5", f"sglang_kernel-0.4.5-{_ABI3_310}", _SM100, _SGLK_CU13, cuda=13),
    Fact(
        "sglang-kernel",
        "0.4.10",
        f"sglang_kernel-0.4.10-{_ABI3_310}",
        _SM100,
        "sm_80 sm_89 sm_90 sm_90a sm_100f sm_120a",
        cuda=13,
    ),
    # torch from PyPI (its default CUDA build): libtorch_cuda.so
    Fact(
        "torch",
        "2.7.0",
        f"torch-2.7.0-{_TORCH}",
        _LIBTORCH,
        "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_89 sm_90 sm_90a",
        cuda=12,
        requires="triton==3.3.0",
    ),
    Fact(
        "torch",
        "2.7.1",
        f"torch-2.7.1-{_TORCH}",
        _LIBTORCH,
        "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_89 sm_90 sm_90a",
        cuda=12,
    ),
    Fact(
        "torch",
        "2.8.0",
        f"torch-2.8.0-{_TORCH}",
        _LIBTORCH,
        "sm_70 sm_75 sm_80 sm_86 sm_89 sm_90 sm_90a sm_100 sm_100a sm_120 sm_120a",
        cuda=12,
    ),
    Fact(
        "torch",
        "2.14.1",
        f"torch-2.14.1-{_TORCH}",
        _LIBTORCH,
        "sm_75 sm_80 sm_86 sm_89 sm_90 sm_90a sm_100 sm_100a sm_103f sm_120 sm_120a sm_121a",
        cuda=13,
    ),
    # Triton: the ptxas it assembles every kernel with (3.3 added ptxas-blackwell for sm_100+; 3.4 has one ptxas)
    Fact(
        "triton",
        "3.2.0",
        "triton-3.2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "triton/backends/nvidia/bin/ptxas",
        gpu_names=_PTXAS_124,
        release="12.4",
    ),
    Fact(
        "triton",
        "3.3.0",
        f"triton-3.3.0-{_TRITON}",
        "triton/backends/nvidia/bin/ptxas-blackwell",
        gpu_names=_PTXAS_128,
        release="12.8",
    ),
    Fact(
        "triton",
        "3.4.0",
        f"triton-3.4.0-{_TRITON}",
        "triton/backends/nvidia/bin/ptxas",
        gpu_names=_PTXAS_128,
        release="12.8",
    ),
    # A CUDA 12 toolkit's ptxas from PyPI (nvcc from the same release lists the same compute_ values)
    Fact(
        "nvidia-cuda-nvcc-cu12",
        "12.6.85",
        "nvidia_cuda_nvcc_cu12-12.6.85-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
        "nvidia/cuda_nvcc/bin/ptxas",
        gpu_names=_PTXAS_124,
        release="12.6",
    ),
    Fact(
        "nvidia-cuda-nvcc-cu12",
        "12.8.93",
        "nvidia_cuda_nvcc_cu12-12.8.93-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        "nvidia/cuda_nvcc/bin/ptxas",
        gpu_names=_PTXAS_128,
        release="12.8",
    ),
    # SGLang's pins (wheel METADATA)
    Fact(
        "sglang",
        "0.4.10.post2",
        "sglang-0.4.10.post2-py3-none-any.whl",
        "METADATA",
        requires="sgl-kernel==0.2.8 torch==2.7.1",
    ),
    Fact(
        "sglang",
        "0.5.1",
        "sglang-0.5.1-py3-none-any.whl",
        "METADATA",
        requires="sgl-kernel==0.3.5 torch==2.8.0",
    ),
    Fact(
        "sglang",
        "0.5.1.post3",
        "sglang-0.5.1.post3-py3-none-any.whl",
        "METADATA",
        requires="sgl-kernel==0.3.7",
    ),
    Fact(
        "sglang",
        "0.5.2",
        "sglang-0.5.2-py3-none-any.whl",
        "METADATA",
        requires="sgl-kernel==0.3.9.post2 torch==2.8.0",
    ),
    Fact(
        "sglang",
        "0.5.23",
        "sglang-0.5.23-cp311-cp311-manylinux_2_34_x86_64.whl",
        "METADATA",
        requires="sglang-kernel==0.4.10 torch==2.14.1",
    ),
)


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def rows(*dists: str) -> list[Fact]:
    """The table's rows of these distributions, oldest release first."""
    return sorted((f for f in FACTS if f.dist in dists), key=lambda f: _version(f.version))


def nearest(candidates: list[Fact], installed: str | None) -> Fact | None:
    """The first release after ``installed`` among ``candidates``, else the newest before it."""
    if not candidates:
        return None
    if installed is None:
        return candidates[-1]
    later = [f for f in candidates if _version(f.version) > _version(installed)]
    return later[0] if later else candidates[-1]


def pins(fact: Fact) -> dict[str, str]:
    """A METADATA row's exact pins: ``{"sgl-kernel": "0.3.9.post2", "torch": "2.8.0"}``."""
    return dict(p.split("==", 1) for p in fact.requires.split() if "==" in p)


def first_sglang_pinning(dists: tuple[str, ...], good: list[Fact]) -> tuple[Fact, str] | None:
    """The first SGLang release read that pins one of ``good`` (a release of ``dists``), and that pin."""
    versions = {f.version for f in good}
    for sglang in rows("sglang"):
        for dist, version in pins(sglang).items():
            if dist in dists and version in versions:
                return sglang, f"{dist}=={version}"
    return None
