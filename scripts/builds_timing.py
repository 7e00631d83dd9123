"""How long the fat-binary reader takes on the installed libraries, with the file's
pages in memory (warm) and evicted first (cold: ``posix_fadvise(DONTNEED)``, what a
first ``doctor`` after an install sees), and what ``cuobjdump --list-elf`` and
``--list-ptx`` take on the same file. docs/builds.md quotes its output.

    python scripts/builds_timing.py [--no-cuobjdump] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from sglang_consumer_gpu.builds.fatbin import read_device_code
from sglang_consumer_gpu.versions import package_dirs


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _time(fn, repeat: int, before=None) -> float:
    runs = []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-cuobjdump", action="store_true")
    args = ap.parse_args()
    torch, sgl, triton = (package_dirs(n)[0] for n in ("torch", "sgl_kernel", "triton"))
    cuobjdump = shutil.which("cuobjdump") or str(triton / "backends" / "nvidia" / "bin" / "cuobjdump")
    files = [
        torch / "lib" / "libtorch_cuda.so",
        torch / "lib" / "libtorch_cuda_linalg.so",
        sgl / "sm100" / "common_ops.abi3.so",
        sgl / "flash_ops.abi3.so",
    ]
    print(
        "| file | size | containers | entries | reader warm | reader cold | cuobjdump -lelf + -lptx (warm) |"
    )
    print("|---|---|---|---|---|---|---|")
    for path in files:
        code = read_device_code(path)
        warm = _time(lambda p=path: read_device_code(p), args.repeat)
        cold = _time(lambda p=path: read_device_code(p), args.repeat, before=lambda p=path: _evict(p))
        dump = "-"
        if not args.no_cuobjdump:
            t0 = time.perf_counter()
            for what in ("--list-elf", "--list-ptx"):
                subprocess.run([cuobjdump, what, str(path)], capture_output=True, check=True)
            dump = f"{time.perf_counter() - t0:.1f} s"
        size = path.stat().st_size / 2**20
        print(
            f"| {path.parent.name}/{path.name} | {size:.0f} MiB | {code.containers} | {code.entries} "
            f"| {warm * 1000:.0f} ms | {cold * 1000:.0f} ms | {dump} |"
        )


if __name__ == "__main__":
    main()
