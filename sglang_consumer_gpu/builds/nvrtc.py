"""Whether the ``libnvrtc`` a CUDA library is linked against can be loaded.

``libtorch_cuda.so`` and every ``sgl_kernel`` library name ``libnvrtc.so.<CUDA
major>`` as a DT_NEEDED entry, so a missing one fails ``import torch`` or
``import sgl_kernel`` with ``libnvrtc.so.12: cannot open shared object file``.
torch finds its copy through its RUNPATH (``$ORIGIN/../../nvidia/cu13/lib``:
the ``nvidia-cuda-nvrtc`` wheel); ``sgl_kernel``'s libraries have no RUNPATH
and are loaded after torch, so they get torch's copy when the CUDA majors
agree, and otherwise only what ``LD_LIBRARY_PATH`` or the system's loader cache
holds. That is the usual cause: an sgl-kernel built for CUDA 12 next to a torch
built for CUDA 13. The check resolves the name as the dynamic loader would
and loads the file it finds, without importing torch.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from sglang_consumer_gpu.builds import releases
from sglang_consumer_gpu.builds.cache import cached
from sglang_consumer_gpu.builds.items import MISSING, OK, UNREADABLE, Binary, Item, Package

#: Where glibc's loader looks last (after RUNPATH, LD_LIBRARY_PATH and /etc/ld.so.cache).
SYSTEM_DIRS = (
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
)
LD_CACHE = Path("/etc/ld.so.cache")


def nvrtc_needed(needed: Sequence[str]) -> str | None:
    return next((n for n in needed if re.fullmatch(r"libnvrtc\.so(\.\d+)*", n)), None)


def expand_runpath(runpath: Sequence[str], binary: Path) -> list[Path]:
    origin = str(binary.resolve().parent)
    return [
        Path(os.path.normpath(p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))) for p in runpath
    ]


def _in_ld_cache(soname: str) -> Path | None:
    """A path ending in ``/soname`` in the loader cache's string table (what ``ldconfig -p`` lists)."""
    try:
        data = LD_CACHE.read_bytes()
    except OSError:
        return None
    for m in re.finditer(rb"(/[^\0]*/" + re.escape(soname.encode()) + rb")\0", data):
        path = Path(m.group(1).decode("utf-8", "replace"))
        if path.is_file():
            return path
    return None


def resolve(
    soname: str,
    runpath: Sequence[Path],
    environ: Mapping[str, str],
    preloaded: Mapping[str, Path] | None = None,
) -> tuple[Path | None, str]:
    """Where the dynamic loader finds ``soname`` for a library with this RUNPATH,
    after ``preloaded`` (soname -> file, what torch already loaded)."""
    if preloaded and soname in preloaded:
        return preloaded[soname], "torch's copy"
    for where, dirs in (
        ("its RUNPATH", list(runpath)),
        ("LD_LIBRARY_PATH", [Path(p) for p in environ.get("LD_LIBRARY_PATH", "").split(":") if p]),
    ):
        for d in dirs:
            if (d / soname).is_file():
                return d / soname, where
    listed = _in_ld_cache(soname)
    if listed is not None:
        return listed, "the loader cache"
    for d in SYSTEM_DIRS:
        if (Path(d) / soname).is_file():
            return Path(d) / soname, "a system directory"
    return None, "not found"


def _dlopen(path: Path) -> dict[str, str | None]:
    try:
        ctypes.CDLL(os.fspath(path), mode=os.RTLD_LOCAL | os.RTLD_LAZY)
    except OSError as exc:
        return {"error": str(exc)}
    return {"error": None}


def loads(path: Path) -> str | None:
    """None when ``path`` loads (dlopen, local symbols), else the loader's message. Remembered until the
    file changes: loading the 100 MB library costs a warm ``doctor`` 20-40 ms and 27 MB."""
    return cached("dlopen", path, _dlopen)["error"]


def nvrtc_package(torch_core: Binary | None, sgl_core: Binary | None, environ: Mapping[str, str]) -> Package:
    pkg = Package("libnvrtc", "", "(NVRTC: torch and sgl_kernel link it; a missing one fails their import)")
    preloaded: dict[str, Path] = {}
    for owner, binary in (("torch", torch_core), ("sgl_kernel", sgl_core)):
        if binary is None or binary.code is None:
            continue
        soname = nvrtc_needed(binary.needed)
        if soname is None:
            continue
        label = f"{owner}: {binary.path.parent.name}/{binary.path.name} needs {soname}"
        found, via = resolve(soname, expand_runpath(binary.runpath, binary.path), environ, preloaded)
        if found is None:
            pkg.items.append(
                Item(
                    label,
                    MISSING,
                    f"not found: `import {owner}` fails with `{soname}: cannot open shared object file`",
                    _nvrtc_fix(owner, soname, preloaded),
                )
            )
            continue
        error = loads(found)
        if error is not None:
            pkg.items.append(
                Item(
                    label,
                    UNREADABLE,
                    f"{found} ({via}) does not load: {error}",
                    _nvrtc_fix(owner, soname, preloaded),
                )
            )
            continue
        if owner == "torch":
            preloaded[soname] = found
        pkg.items.append(Item(label, OK, f"{found} ({via}) loads"))
    return pkg


def _nvrtc_fix(owner: str, soname: str, preloaded: Mapping[str, Path]) -> str:
    major = soname.rpartition(".so.")[2]
    wheel = "nvidia-cuda-nvrtc" if major == "13" else f"nvidia-cuda-nvrtc-cu{major}"
    fix = f"pip install {wheel}"
    if owner == "sgl_kernel" and preloaded:
        have = ", ".join(sorted(preloaded))
        builds = [f for f in releases.rows("sglang-kernel", "sgl-kernel") if f.cuda is not None]
        matching = next((f for f in builds if f"libnvrtc.so.{f.cuda}" in preloaded), None)
        fix = (
            f"this sgl_kernel is a CUDA {major} build but torch brings {have}: install the sgl-kernel built for "
            f"torch's CUDA"
            + (
                f" ({matching.dist} {matching.version} is the first CUDA {matching.cuda} build "
                f"read: {matching.wheel})"
                if matching
                else ""
            )
            + f", or {fix} and add its lib directory to LD_LIBRARY_PATH"
        )
    return fix
