"""Read the facts of sglang_consumer_gpu/builds/releases.py again from the real wheels.

Each release is fetched with ``pip download --no-deps`` (CPython 3.11, x86_64
manylinux) into a temporary directory, the file of interest is taken out of the
wheel and read with the package's own readers (cubins and PTX of a library and the
CUDA runtime it links, the ``--gpu-name`` values of a ptxas, the pins of a
METADATA), and the wheel is deleted. One line per release, to compare with the
table (a wheel is 0.1-1 GB; give the releases to read as arguments):

    python scripts/builds_release_facts.py sgl-kernel==0.3.9 torch==2.8.0 triton==3.3.0 sglang==0.5.2
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sglang_consumer_gpu.builds.elf import open_elf
from sglang_consumer_gpu.builds.fatbin import read_elf
from sglang_consumer_gpu.builds.items import ordered
from sglang_consumer_gpu.builds.tools import parse_gpu_names

#: The file read from each distribution's wheel.
MEMBERS = {
    "sgl-kernel": r"sgl_kernel/(sm100/)?common_ops[^/]*\.so$",
    "sglang-kernel": r"sgl_kernel/sm100/common_ops[^/]*\.so$",
    "torch": r"torch/lib/libtorch_cuda\.so$",
    "triton": r"triton/backends/nvidia/bin/ptxas(-blackwell)?$",
    "nvidia-cuda-nvcc-cu12": r"nvidia/cuda_nvcc/bin/ptxas$",
    "sglang": r"\.dist-info/METADATA$",
}
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in (34, 28, 27, 17, 12, 5)),
    *("manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"),
)


def download(requirement: str, into: Path) -> Path:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--only-binary=:all:",
         "--python-version", "3.11", *platforms, requirement, "-d", str(into)],
        check=True,
    )  # fmt: skip
    return next(into.glob("*.whl"))


def read_member(wheel: Path, name: str, into: Path) -> str:
    out = into / Path(name).name
    with zipfile.ZipFile(wheel) as z, z.open(name) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    if name.endswith("METADATA"):
        pins = re.findall(
            r"^Requires-Dist: ((?:sgl-kernel|sglang-kernel|torch)==[^\s;,]+)", out.read_text(), re.M
        )
        return f"requires={' '.join(dict.fromkeys(pins))!r}"
    if "ptxas" in name:
        os.chmod(out, 0o755)
        help_text = subprocess.run([str(out), "--help"], capture_output=True, text=True, check=True).stdout
        version = subprocess.run([str(out), "--version"], capture_output=True, text=True, check=True).stdout
        release = re.search(r"release (\d+\.\d+)", version)
        names = ordered(n for n in parse_gpu_names(help_text) if n.startswith("sm_"))
        return f"release={release.group(1) if release else None!r} gpu_names={' '.join(names)!r}"
    with open_elf(out) as elf:
        code, needed = read_elf(elf), elf.dynamic().needed
    cuda = next((n.rpartition(".so.")[2] for n in needed if n.startswith("libcudart.so.")), None)
    return f"sass={' '.join(a.name for a in sorted(code.sass))!r} ptx={' '.join(a.name for a in sorted(code.ptx))!r} cuda={cuda}"


def main(requirements: list[str]) -> None:
    for requirement in requirements:
        dist = re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0]
        with tempfile.TemporaryDirectory(prefix="builds-facts-") as tmp:
            try:
                wheel = download(requirement, Path(tmp))
            except subprocess.CalledProcessError:
                print(f"{requirement}: pip download failed (its message is above)", flush=True)
                continue
            with zipfile.ZipFile(wheel) as z:
                names = [n for n in z.namelist() if re.search(MEMBERS[dist], n)]
            for name in names:
                print(f"{dist} {wheel.name} {name}: {read_member(wheel, name, Path(tmp))}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
