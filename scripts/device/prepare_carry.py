"""Build ``.carry/sglang-0.5.23/``: SGLang's real kernel files for the device machine.

The device machine has no SGLang and no package registry, and everything sent
with a ``run`` call (working tree included) must stay under 64 MiB. This script,
run HERE (where pip works):

1. downloads the official ``sglang==0.5.23`` wheel (``pip download --no-deps``;
   pip checks it against PyPI's hash) into a cache outside the repo;
2. extracts only the files the kernel modules need (``KEEP`` below: SGLang's
   files byte for byte, no edits) into ``.carry/sglang-0.5.23/site``;
3. unpacks the small binary wheel(s) those files import that the device image
   lacks (``msgspec``) for the device's Python (3.12, manylinux x86-64);
4. writes ``MANIFEST.json`` (wheel sha256, file list, sizes);
5. with ``--check``, imports the target modules through ``sglang_env`` in a
   fresh interpreter and fails if any SGLang module came from outside the carry.

Usage: ``python scripts/device/prepare_carry.py [--python-version 3.12] [--check]``
(``--python-version 3.11 --out /tmp/carry311`` builds a copy for a local dry run).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

SGLANG_VERSION = "0.5.23"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".carry" / f"sglang-{SGLANG_VERSION}"
WHEEL_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sglang-consumer-gpu" / "wheels"
)

#: Files taken from the wheel (glob patterns on paths inside it). The kernel
#: modules, what they import at module level or when called, and the helper
#: sources the stand-ins in sglang_env.py are cut from.
KEEP: tuple[str, ...] = (
    "sglang/version.py",
    # kernels and their registry (imported by kernels.ops.*/__init__)
    "sglang/kernels/registry.py",
    "sglang/kernels/selector.py",
    "sglang/kernels/spec.py",
    "sglang/kernels/fused_op.py",
    "sglang/kernels/kernel_api_logging.py",
    "sglang/kernels/ops/__init__.py",
    "sglang/kernels/ops/moe/*.py",
    "sglang/kernels/ops/attention/*.py",
    "sglang/kernels/ops/quantization/*.py",
    "sglang/kernels/jit/__init__.py",
    "sglang/kernels/jit/utils/*.py",
    "sglang/kernels/jit/utils/compile/*.py",
    # paths.py refuses to import without the JIT C++ sources beside it (fnmatch's * spans dirs)
    "sglang/kernels/jit/include/*",
    "sglang/kernels/jit/csrc/*",
    # config lookup for the fused-MoE kernel (and SGLang's tuned JSON configs)
    "sglang/srt/layers/moe/moe_runner/triton_utils/*.py",
    "sglang/srt/layers/moe/moe_runner/triton_utils/configs/*",
    "sglang/srt/environ.py",
    "sglang/srt/runtime_context.py",
    "sglang/srt/arg_groups/*.py",  # runtime_context reads the argument declarations at import
    # sources of the stand-ins (sglang_env.STANDINS)
    "sglang/srt/utils/common.py",
    "sglang/srt/utils/patch_torch.py",
    "sglang/srt/utils/custom_op.py",  # the JIT fp8/int8 quant wrappers register torch ops with it
    "sglang/srt/platforms/*.py",  # ... through direct_register_custom_op, which asks current_platform
    "sglang/srt/plugins/*.py",
    "sglang/srt/batch_invariant_ops/batch_invariant_ops.py",
    "sglang/srt/layers/moe/utils.py",
)
#: Attention files that are not Triton (CuTe DSL, FlashMLA, AMD): left out to save space.
DROP: tuple[str, ...] = (
    "sglang/kernels/ops/attention/cutedsl_*",
    "sglang/kernels/ops/attention/kda_*",
    "sglang/kernels/ops/attention/flash_*",
    "sglang/kernels/ops/attention/*_hip.py",
    "sglang/kernels/ops/attention/unified_attention_3d_mtp.py",
)
#: Binary wheels the kept files import that the device image lacks: name==version.
DEVICE_WHEELS: tuple[str, ...] = ("msgspec==0.22.0",)


def _pip_download(spec: str, dest: Path, python_version: str | None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec]
    if python_version:
        cmd += ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
        for plat in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"):
            cmd += ["--platform", plat]
    subprocess.run(cmd, check=True)
    name, _, version = spec.partition("==")
    hits = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if python_version:
        tag = "cp" + python_version.replace(".", "")
        hits = [h for h in hits if f"-{tag}-" in h.name or "-py3-none-" in h.name] or hits
    if not hits:
        raise FileNotFoundError(f"pip saved no wheel for {spec} in {dest}")
    return hits[-1]


def sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (also used by prepare_sglang.py and install_sglang.py)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _wanted(name: str) -> bool:
    if any(fnmatch.fnmatch(name, p) for p in DROP):
        return False
    return any(fnmatch.fnmatch(name, p) for p in KEEP)


def build(out: Path, python_version: str) -> dict:
    sglang_whl = _pip_download(f"sglang=={SGLANG_VERSION}", WHEEL_CACHE, None)
    site = out / "site"
    if out.exists():
        shutil.rmtree(out)
    site.mkdir(parents=True)
    files: list[str] = []
    with zipfile.ZipFile(sglang_whl) as zf:
        for info in zf.infolist():
            if not info.is_dir() and _wanted(info.filename):
                zf.extract(info, site)
                files.append(info.filename)
    missing = [p for p in KEEP if not any(fnmatch.fnmatch(f, p) for f in files)]
    if missing:
        raise RuntimeError(f"the {SGLANG_VERSION} wheel has no file matching {missing}")
    wheels = {}
    for spec in DEVICE_WHEELS:
        whl = _pip_download(spec, WHEEL_CACHE, python_version)
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)
        wheels[whl.name] = sha256(whl)
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    manifest = {
        "sglang_wheel": sglang_whl.name,
        "sglang_wheel_sha256": sha256(sglang_whl),
        "python_version": python_version,
        "extra_wheels": wheels,
        "files": sorted(files),
        "bytes": size,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    return manifest


#: Top-level modules of the device image (KINDS.md's package list) that the
#: check's clean interpreter may import: nothing else from this machine.
DEVICE_IMPORTS: tuple[str, ...] = (
    "torch",
    "torchgen",
    "functorch",
    "triton",
    "numpy",
    "numpy.libs",
    "typing_extensions.py",
    "filelock",
    "sympy",
    "mpmath",
    "networkx",
    "jinja2",
    "markupsafe",
    "fsspec",
    "nvidia",
    "packaging",
    "psutil",
    "tqdm",
    "pynvml.py",
    "cuda",
    "yaml",
    "_yaml",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
)

_CHECK = r"""
import json, sys
sys.path.insert(0, {repo!r})
from scripts.device import sglang_env
sglang_env.ensure_sglang()
mods = sglang_env.import_targets()
outside = sorted(
    n for n, m in sys.modules.items()
    if (n == "sglang" or n.startswith("sglang.")) and getattr(m, "__file__", None)
    and not m.__file__.startswith({site!r})
)
print(json.dumps({{"ok": not outside, "outside": outside,
    "loaded": sorted(n for n in sys.modules if n.startswith("sglang."))}}))
"""


def check(out: Path) -> dict:
    """Import the targets in a fresh ``python -S`` whose path holds only the
    packages the device image has (symlinked from here), not this machine's SGLang."""
    import tempfile

    import torch

    site_packages = Path(torch.__file__).parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        for name in DEVICE_IMPORTS:
            src = site_packages / name
            if src.exists():
                (Path(tmp) / name).symlink_to(src)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["SGLANG_DEVICE_CARRY"] = str(out)
        code = f"import sys; sys.path.append({tmp!r})\n" + _CHECK.format(
            repo=str(REPO), site=str(out / "site")
        )
        proc = subprocess.run(
            [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=False
        )
    if proc.returncode:
        raise RuntimeError(f"import check failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--python-version", default="3.12", help="the device's Python (for binary wheels)")
    ap.add_argument(
        "--check", action="store_true", help="import the targets from the carry in a clean interpreter"
    )
    args = ap.parse_args()
    manifest = build(args.out, args.python_version)
    print(f"{args.out}: {len(manifest['files'])} SGLang files, {manifest['bytes'] / 2**20:.1f} MiB")
    if args.check:
        result = check(args.out)
        print(json.dumps({k: result[k] for k in ("ok", "outside")}))
        return 0 if result["ok"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
