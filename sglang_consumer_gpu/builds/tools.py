"""Which architectures the CUDA compilers that run at serving time accept, asked
of the binaries themselves: Triton's bundled ptxas (every Triton kernel is
assembled by it: ``ptxas: Value 'sm_120a' is not defined`` means no Triton
kernel builds for that GPU) and the nvcc that FlashInfer's and SGLang's JIT
builds invoke.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.builds.cache import cached

_TIMEOUT_S = 20


@dataclass(frozen=True)
class ToolTargets:
    """A compiler, its CUDA release, and the targets it accepts (``sm_120a``, ``compute_120``, ...)."""

    path: str
    release: str | None  # "12.9", from `--version`
    targets: frozenset[str]

    def accepts(self, name: str) -> bool:
        return name in self.targets


def _run(path: Path, *args: str) -> str:
    """A tool's output; OSError when it cannot be run, fails or hangs (what doctor reports as "could not run")."""
    try:
        proc = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"`{path} {' '.join(args)}` did not answer in {_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        raise OSError(f"`{path} {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    return proc.stdout


def _release(version_text: str) -> str | None:
    m = re.search(r"release (\d+\.\d+)", version_text)
    return m.group(1) if m else None


def parse_gpu_names(help_text: str) -> frozenset[str]:
    """The ``--gpu-name`` values listed by ``ptxas --help`` ("Allowed values for this option: 'sm_50', ...")."""
    block = help_text.partition("--gpu-name")[2].partition("Allowed values for this option:")[2]
    block = block.partition(".\n")[0].partition("Default value")[0]
    return frozenset(re.findall(r"'([a-z]+_\d+[a-z]?)'", block))


def _read_ptxas(path: Path) -> dict[str, Any]:
    names = parse_gpu_names(_run(path, "--help"))
    if not names:
        raise OSError(f"`{path} --help` lists no --gpu-name values")
    return {"release": _release(_run(path, "--version")), "targets": sorted(names)}


def _read_nvcc(path: Path) -> dict[str, Any]:
    targets = _run(path, "--list-gpu-arch").split()
    return {"release": _release(_run(path, "--version")), "targets": sorted(targets)}


def ptxas_targets(path: Path) -> ToolTargets:
    """What ``path`` (a ptxas) accepts for ``--gpu-name``; OSError if it cannot be run."""
    d = cached("ptxas", path, _read_ptxas)
    return ToolTargets(str(path), d["release"], frozenset(d["targets"]))


def nvcc_targets(path: Path) -> ToolTargets:
    """``nvcc --list-gpu-arch`` (``compute_75 ... compute_120 ...``); OSError if it cannot be run."""
    d = cached("nvcc", path, _read_nvcc)
    return ToolTargets(str(path), d["release"], frozenset(d["targets"]))


@dataclass(frozen=True)
class PtxasChoice:
    """The ptxas Triton runs for one GPU, the variable that overrides it, and the ``--gpu-name`` it passes."""

    path: Path
    variable: str
    gpu_name: str
    from_environment: bool


def _triton_rules(compiler_py: str, arch: int) -> tuple[bool, str]:
    """From the installed ``backends/nvidia/compiler.py``: whether ``get_ptxas`` picks
    ``ptxas-blackwell`` for ``arch`` (Triton 3.3 and 3.8 do from sm_100 on; 3.2 and
    3.4 have one ptxas), and the ``--gpu-name`` it builds (3.3+: "a" from sm_90 on,
    ``sm_120a``; 3.2: only ``sm_90a``)."""
    body = re.search(r"def get_ptxas\(.*?(?=\n(?:def |@|class ))", compiler_py, re.S)
    floor = re.search(r"arch >= (\d+)", body.group(0)) if body and "blackwell" in body.group(0) else None
    blackwell = floor is not None and arch >= int(floor.group(1))
    rule = re.search(r"""["']a["'] if capability (>=|==) 90""", compiler_py)
    if rule is not None and rule.group(1) == "==":
        return blackwell, f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
    return blackwell, gpu_name_since_3_3(arch)


def gpu_name_since_3_3(arch: int) -> str:
    """The ``--gpu-name`` Triton 3.3-3.8 asks for (``sm_arch_from_capability``): "a" from sm_90 on."""
    return f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"


def triton_ptxas(triton_dir: Path, arch: int, environ: Mapping[str, str]) -> PtxasChoice:
    """The ptxas Triton runs for ``arch``: ``TRITON_PTXAS_PATH`` (``TRITON_PTXAS_BLACKWELL_PATH``
    for ptxas-blackwell; Triton 3.3 spelled it ``TRITON_PTXAS-BLACKWELL_PATH``) when that
    file exists, else the one in ``backends/nvidia/bin`` (``_path_to_binary`` / ``knobs.env_nvidia_tool``)."""
    try:
        source = (triton_dir / "backends" / "nvidia" / "compiler.py").read_text(encoding="utf-8")
    except OSError:
        source = ""
    blackwell, gpu_name = _triton_rules(source, arch)
    name = "ptxas-blackwell" if blackwell else "ptxas"
    variables = (
        ("TRITON_PTXAS_BLACKWELL_PATH", "TRITON_PTXAS-BLACKWELL_PATH")
        if blackwell
        else ("TRITON_PTXAS_PATH",)
    )
    for var in variables:
        explicit = environ.get(var)
        if explicit and Path(explicit).is_file():
            return PtxasChoice(Path(explicit), var, gpu_name, True)
    return PtxasChoice(triton_dir / "backends" / "nvidia" / "bin" / name, variables[0], gpu_name, False)


def jit_nvcc(environ: Mapping[str, str]) -> Path:
    """The nvcc FlashInfer (``jit/cpp_ext.get_cuda_path``) and SGLang's JIT kernels
    (``kernels/jit/utils/compile/toolchain.cuda_home``) run: ``$CUDA_HOME`` or
    ``$CUDA_PATH``, else the ``nvcc`` on ``PATH``, else ``/usr/local/cuda``."""
    home = environ.get("CUDA_HOME") or environ.get("CUDA_PATH")
    if home is None:
        on_path = shutil.which("nvcc", path=environ.get("PATH", os.defpath))
        home = os.path.dirname(os.path.dirname(on_path)) if on_path else "/usr/local/cuda"
    return Path(home) / "bin" / "nvcc"
