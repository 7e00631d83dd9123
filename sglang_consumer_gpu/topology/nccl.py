"""The NCCL a CUDA build of torch loads, read from the installed files, and what each
architecture needs from it.

Reading it must not import torch or create a CUDA context (``doctor`` answers in about a
second, and the launcher process must stay fork-safe), so the version comes from the
library file itself: every NCCL embeds ``NCCL version 2.27.3+cuda12.8`` as a string, a few
MB into the file. torch's wheels load ``libnccl.so.2`` from the ``nvidia-nccl-cu1x`` wheel
their metadata requires; SGLang's own NCCL wrapper (``pynccl``) loads the same library,
unless ``SGLANG_NCCL_SO_PATH`` names another (``pynccl_wrapper.find_nccl_library``).
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.topology.model import NcclLibrary

#: SGLang's override for the library its NCCL wrapper loads (torch's process groups keep theirs).
SO_PATH_ENV = "SGLANG_NCCL_SO_PATH"
#: The wheels that ship ``libnccl.so.2`` for torch, newest CUDA first.
NCCL_WHEELS = ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11")
_EMBEDDED = re.compile(rb"NCCL version (\d+\.\d+\.\d+)\+cuda(\d+\.\d+)")


@dataclass(frozen=True)
class NcclNeed:
    """What NCCL must be for one GPU architecture, with where that is written down."""

    minimum: str  # below it NCCL fails on this architecture
    recommended: str  # below it users report failures with SGLang
    minimum_cuda: str  # an NCCL built with an older CUDA carries no code for the architecture
    why_minimum: str
    why_recommended: str


#: By compute-capability major. Ampere and Ada (sm_8x) run NCCL's sm_80 code and need nothing newer.
NCCL_NEEDS: dict[int, NcclNeed] = {
    12: NcclNeed(
        minimum="2.26.2",
        recommended="2.27.3",
        minimum_cuda="12.8",
        why_minimum=(
            "NCCL 2.25.1, the first with sm_120 code, fails on RTX 5090s when a communicator starts "
            '("ncclMaxSharedMem 82240 exceeds device/fn maxSharedMem 79856", NVIDIA/nccl-tests#287, '
            'NVIDIA/nccl#1637); 2.26.2 "Fix shared memory usage on recent Blackwell GPUs" (its release notes)'
        ),
        why_recommended=(
            "with nvidia-nccl-cu12 2.26.2, SGLang --tp 2 on RTX 5090s did not work until "
            "`pip install -U nvidia-nccl-cu12` (2.27.x) (sgl-project/sglang#7227)"
        ),
    ),
    10: NcclNeed(
        minimum="2.25.1",
        recommended="2.25.1",
        minimum_cuda="12.8",
        why_minimum='NCCL 2.25.1 "Add Blackwell/SM100 support" (its release notes)',
        why_recommended="",
    ),
}


def nccl_need(spec: GpuSpec) -> NcclNeed | None:
    return NCCL_NEEDS.get(spec.capability[0])


def older(version: str, than: str) -> bool:
    try:
        return Version(version) < Version(than)
    except InvalidVersion:
        return False


def embedded_version(path: Path) -> tuple[str, str] | None:
    """(version, CUDA) from the string NCCL carries ("NCCL version 2.27.3+cuda12.8"); None if absent."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = _EMBEDDED.search(data)  # the match reads from the map: decode before it closes
            return (found.group(1).decode(), found.group(2).decode()) if found else None
    except (OSError, ValueError):
        return None


def _torch_requirement() -> Requirement | None:
    """The NCCL wheel torch's metadata asks for (CUDA builds of torch on Linux)."""
    try:
        requires = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.startswith("nvidia-nccl"):
            return req
    return None


def _wheel_library(dist_name: str) -> Path | None:
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name.startswith("libnccl.so"):
            return Path(str(dist.locate_file(f)))
    return None


def _library(
    path: Path, origin: str, torch_wants: str | None, wheel: str | None = None, fallback: str | None = None
) -> NcclLibrary:
    found = embedded_version(path)
    version, cuda = found if found else (fallback, None)
    return NcclLibrary(version, cuda, str(path), origin, torch_wants, wheel)


def installed_nccl(env: Mapping[str, str] = os.environ) -> NcclLibrary:
    """The NCCL SGLang's processes will load here (an unknown version when none is found)."""
    req = _torch_requirement()
    wants = f"{req.name}{req.specifier}" if req else None
    override = env.get(SO_PATH_ENV)
    if override:
        return _library(Path(override), f"{SO_PATH_ENV}={override}", wants, req.name if req else None)
    names = ([req.name] if req else []) + [n for n in NCCL_WHEELS if not req or n != req.name]
    for name in names:
        lib = _wheel_library(name)
        if lib is not None:
            try:
                fallback: str | None = metadata.version(name)
            except metadata.PackageNotFoundError:
                fallback = None
            return _library(lib, f"{name} wheel", wants, name, fallback)
    return NcclLibrary(None, None, None, "no nvidia-nccl wheel installed", wants, req.name if req else None)
