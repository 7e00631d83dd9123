"""The libraries torch and sgl-kernel load, read for the GPU: which architectures
their cubins and PTX cover, and which library ``sgl_kernel`` loads on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from sglang_consumer_gpu.builds import releases
from sglang_consumer_gpu.builds.items import (
    MISSING,
    NO_CODE,
    Binary,
    Item,
    Package,
    read_binary,
    rel,
    release_fix,
    verdict,
)
from sglang_consumer_gpu.hardware import GpuSpec
from sglang_consumer_gpu.versions import installed_version, package_dirs

#: Where a CUDA 12.8 build of torch comes from (PyPI's default build has sm_120 from torch 2.8.0 on).
CU128_INDEX = "https://download.pytorch.org/whl/cu128"


def _torch_cuda(root: Path) -> str | None:
    try:
        text = (root / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"^cuda(?::[^=]*)?=\s*['\"]([\d.]+)['\"]", text, re.M)
    return m.group(1) if m else None


def torch_package(spec: GpuSpec | None, pins: Mapping[str, str]) -> tuple[Package, Binary | None]:
    version = installed_version("torch")
    dirs = package_dirs("torch")
    if not dirs or version is None:
        fix = (
            f"pip install torch=={pins['torch']} (what the installed SGLang requires)"
            if "torch" in pins
            else ""
        )
        return Package("torch", None, items=[Item("torch", MISSING, "torch is not installed", fix)]), None
    root = dirs[0]
    cuda = _torch_cuda(root)
    pkg = Package("torch", version, f"(CUDA {cuda})" if cuda else "(CPU-only build)")
    binaries = [read_binary(p) for p in sorted((root / "lib").glob("*.so*"))]
    with_code = [b for b in binaries if b.error or (b.code and not b.code.empty)]
    if not with_code:
        fix = f"install torch's CUDA build: pip install torch=={version} --index-url {CU128_INDEX}"
        pkg.items.append(Item("lib/", NO_CODE, "no CUDA library: this torch runs on the CPU only", fix))
        return pkg, None
    for b in with_code:
        item = verdict(b, rel(b.path, root), spec)
        if item.status == NO_CODE and spec is not None:
            good = [f for f in releases.rows("torch") if f.runs_on(spec.capability)]
            item = Item(
                item.subject,
                item.status,
                item.detail,
                release_fix(good, version, f"has {spec.arch_name} code", pins.get("torch"))
                + f"; or the CUDA 12.8 build of your torch: pip install torch=={version} --index-url {CU128_INDEX}",
                item.code,
            )
        pkg.items.append(item)
    core = next((b for b in binaries if b.path.name == "libtorch_cuda.so"), None)
    return pkg, core


# sgl-kernel ----------------------------------------------------------------------------------------


def sgl_kernel_library(root: Path, spec: GpuSpec | None) -> Path | None:
    """The ``common_ops`` library ``sgl_kernel`` loads for ``spec``: ``load_utils._load_architecture_specific_ops``
    (sglang-kernel 0.3.x-0.4.x) takes ``sm90/`` on compute capability 9.0 and ``sm100/`` on every other GPU,
    and falls back to a ``common_ops`` beside ``__init__.py`` (the only one before the split)."""
    sub = "sm90" if spec is not None and spec.capability == (9, 0) else "sm100"
    for where in (root / sub, root):
        found = sorted(p for p in where.glob("common_ops.*") if ".so" in p.name)
        if found:
            return found[0]
    return None


def sgl_kernel_package(spec: GpuSpec | None, pins: Mapping[str, str]) -> tuple[Package, Binary | None]:
    dist = next((d for d in ("sglang-kernel", "sgl-kernel") if installed_version(d)), None)
    version = installed_version(dist) if dist else None
    pinned = next(((d, pins[d]) for d in ("sglang-kernel", "sgl-kernel") if d in pins), None)
    dirs = package_dirs("sgl_kernel")
    if not dirs or version is None:
        fix = f"pip install {pinned[0]}=={pinned[1]} (what the installed SGLang requires)" if pinned else ""
        return Package(
            "sglang-kernel", None, items=[Item("sgl_kernel", MISSING, "sgl_kernel is not installed", fix)]
        ), None
    root = dirs[0]
    core_path = sgl_kernel_library(root, spec)
    core = read_binary(core_path) if core_path is not None else None
    cuda = (
        next((n.rpartition(".so.")[2] for n in core.needed if n.startswith("libcudart.so.")), "")
        if core
        else ""
    )
    pkg = Package(dist or "sglang-kernel", version, f"(built for CUDA {cuda})" if cuda else "")
    if core is None:
        pkg.items.append(
            Item(
                "common_ops",
                MISSING,
                "no common_ops library in sgl_kernel: reinstall it",
                f"pip install --force-reinstall {dist}=={version}",
            )
        )
        return pkg, None
    where = f" (what sgl_kernel loads on {spec.arch_name})" if spec is not None else ""
    item = verdict(core, rel(core.path, root) + where, spec)
    if item.status == NO_CODE and spec is not None:
        good = [f for f in releases.rows("sgl-kernel", "sglang-kernel") if f.runs_on(spec.capability)]
        fix = release_fix(good, version, f"has {spec.arch_name} code", pinned[1] if pinned else None)
        item = Item(item.subject, item.status, item.detail, fix, item.code)
    pkg.items.append(item)
    for path in sorted(p for p in root.rglob("*.so") if p != core.path):
        if spec is not None and path.name.startswith("common_ops."):
            continue  # the other GPUs' build: never loaded on this one
        b = read_binary(path)
        if b.error or (b.code and not b.code.empty):
            pkg.items.append(verdict(b, rel(path, root), spec, optional=True))
    return pkg, core
