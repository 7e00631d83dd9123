"""The compilers that build kernels for the GPU at serving time, asked what they
accept: the ptxas Triton assembles every kernel with, and the nvcc FlashInfer's
and SGLang's JIT builds run (plus FlashInfer's precompiled modules, if any).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from sglang_consumer_gpu.builds import releases, tools
from sglang_consumer_gpu.builds.fatbin import DeviceCode
from sglang_consumer_gpu.builds.items import (
    LISTED,
    MISSING,
    NO_CODE,
    OK,
    OPTIONAL,
    UNREADABLE,
    Binary,
    Item,
    Package,
    ordered,
    read_binary,
    rel,
    release_fix,
    span,
    verdict,
)
from sglang_consumer_gpu.hardware import GpuSpec
from sglang_consumer_gpu.versions import installed_version, package_dirs


def triton_package(spec: GpuSpec | None, environ: Mapping[str, str]) -> Package:
    version = installed_version("triton")
    dirs = package_dirs("triton")
    if not dirs or version is None:
        return Package(
            "triton", None, items=[Item("triton", MISSING, "Triton is not installed: torch brings it")]
        )
    pkg = Package("triton", version)
    archs = [spec.arch] if spec is not None else [90, 100]  # no GPU: list both assemblers, if there are two
    seen = set()
    for arch in archs:
        choice = tools.triton_ptxas(dirs[0], arch, environ)
        if choice.path in seen:
            continue
        seen.add(choice.path)
        label = rel(choice.path, dirs[0]) + (f" (from {choice.variable})" if choice.from_environment else "")
        try:
            targets = tools.ptxas_targets(choice.path)
        except OSError as exc:
            pkg.items.append(
                Item(
                    label,
                    UNREADABLE,
                    f"could not run it: {exc}",
                    f"reinstall triton=={version}, or set {choice.variable} to a working ptxas",
                )
            )
            continue
        names = ordered(n for n in targets.targets if n.startswith("sm_"))
        carries = f"CUDA {targets.release}, --gpu-name {span(names)}"
        if spec is None:
            pkg.items.append(Item(label, LISTED, carries, targets=names))
        elif targets.accepts(choice.gpu_name):
            pkg.items.append(
                Item(
                    label,
                    OK,
                    f"{carries}; knows {choice.gpu_name}, which Triton asks for on {spec.arch_name}",
                    targets=names,
                )
            )
        else:
            pkg.items.append(
                Item(
                    label,
                    NO_CODE,
                    f"{carries}; no {choice.gpu_name}: every Triton kernel fails with "
                    f"`ptxas fatal : Value '{choice.gpu_name}' is not defined for option 'gpu-name'`",
                    _triton_fix(choice, arch, version),
                    targets=names,
                )
            )
    return pkg


def _triton_fix(choice: tools.PtxasChoice, arch: int, version: str) -> str:
    if choice.from_environment:
        return f"{choice.variable}={choice.path} names a ptxas without {choice.gpu_name}: unset it or name a newer one"
    # a newer Triton asks for its own name (Triton 3.2 asks for sm_120, 3.3+ for sm_120a): the fix knows both
    names = {choice.gpu_name, tools.gpu_name_since_3_3(arch)}
    good = [f for f in releases.rows("triton") if all(f.accepts(n) for n in names)]
    fix = release_fix(good, version, f"knows {' and '.join(sorted(names))}")
    pinning = next(
        (t for t in releases.rows("torch") for g in good if f"triton=={g.version}" in t.requires), None
    )
    if pinning is not None:
        fix += f" (torch pins Triton: torch {pinning.version} requires {pinning.requires})"
    nvcc = [f for f in releases.rows("nvidia-cuda-nvcc-cu12") if all(f.accepts(n) for n in names)]
    if nvcc:
        fix += (
            f"; or keep this Triton and set {choice.variable} to a newer ptxas: "
            f"pip install 'nvidia-cuda-nvcc-cu12>={nvcc[0].version}' puts one at site-packages/{nvcc[0].file}"
        )
    return fix


# FlashInfer and SGLang's JIT kernels ---------------------------------------------------------------


def _arch_list_leaves_out(spec: GpuSpec, environ: Mapping[str, str]) -> str | None:
    raw = environ.get("FLASHINFER_CUDA_ARCH_LIST")
    if raw is None:
        return None
    wanted = f"{spec.capability[0]}.{spec.capability[1]}"
    if any(re.sub(r"[a-z]$", "", a) == wanted for a in raw.split()):
        return None
    return raw


def flashinfer_package(spec: GpuSpec | None, environ: Mapping[str, str], pins: Mapping[str, str]) -> Package:
    dist = next((d for d in ("flashinfer-python", "flashinfer") if installed_version(d)), None)
    version = installed_version(dist) if dist else None
    pkg = Package(dist or "flashinfer-python", version, "(JIT: builds its kernels with nvcc at first use)")
    if version is None:
        fix = (
            f"pip install flashinfer-python=={pins['flashinfer-python']}"
            if "flashinfer-python" in pins
            else ""
        )
        pkg.items.append(Item("flashinfer", MISSING, "FlashInfer is not installed", fix))
    aot_dirs = [d / "data" / "aot" for d in package_dirs("flashinfer")] + package_dirs("flashinfer_jit_cache")
    aot = [read_binary(p) for d in aot_dirs if d.is_dir() for p in sorted(d.rglob("*.so"))]
    if aot:
        union = DeviceCode(
            frozenset().union(*(b.code.sass for b in aot if b.code)),
            frozenset().union(*(b.code.ptx for b in aot if b.code)),
        )
        item = verdict(Binary(Path("AOT"), union), f"{len(aot)} precompiled modules", spec)
        if item.status == NO_CODE:  # not a failure: FlashInfer builds them itself
            item = Item(
                item.subject, OPTIONAL, f"{union.describe()}; none for this GPU: JIT builds them instead"
            )
        pkg.items.append(item)
    pkg.items.append(_nvcc_item(spec, environ))
    if spec is not None and (raw := _arch_list_leaves_out(spec, environ)) is not None:
        pkg.items.append(
            Item(
                "FLASHINFER_CUDA_ARCH_LIST",
                NO_CODE,
                f"{raw!r} leaves out {spec.capability[0]}.{spec.capability[1]}",
                f"add {spec.capability[0]}.{spec.capability[1]} to FLASHINFER_CUDA_ARCH_LIST, or unset it",
            )
        )
    return pkg


def _nvcc_item(spec: GpuSpec | None, environ: Mapping[str, str]) -> Item:
    nvcc = tools.jit_nvcc(environ)
    label = f"nvcc for JIT builds (FlashInfer, SGLang's jit kernels): {nvcc}"
    good = [f for f in releases.rows("nvidia-cuda-nvcc-cu12") if spec and f.accepts(f"sm_{spec.arch}")]
    toolkit = (
        f"a CUDA toolkit {good[0].release}+ ({good[0].wheel}'s ptxas is the first read that knows sm_{spec.arch})"
        if spec and good
        else "a CUDA toolkit"
    )
    if not nvcc.is_file():
        return Item(
            label,
            MISSING,
            "not found (looked at $CUDA_HOME, $CUDA_PATH, nvcc on PATH, /usr/local/cuda)",
            f"install {toolkit} and set CUDA_HOME to it",
        )
    try:
        targets = tools.nvcc_targets(nvcc)
    except OSError as exc:
        return Item(label, UNREADABLE, f"could not run it: {exc}")
    computes = ordered(t for t in targets.targets if t.startswith("compute_"))
    carries = f"CUDA {targets.release}, --list-gpu-arch {span(computes)}"
    if spec is None:
        return Item(label, LISTED, carries, targets=computes)
    need = f"compute_{spec.arch}"
    if targets.accepts(need):
        return Item(label, OK, f"{carries}; builds for {spec.arch_name}", targets=computes)
    return Item(
        label,
        NO_CODE,
        f"{carries}; no {need}: JIT builds for {spec.arch_name} fail",
        f"install {toolkit} and set CUDA_HOME to it",
        targets=computes,
    )
