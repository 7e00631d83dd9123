"""Install the carried SGLang 0.5.17 (``.carry/sglang-0.5.17``) into /tmp/site on the device machine.

Standard library only (it runs before anything is installed). Idempotent: the
archive is unpacked only when /tmp/site does not already hold this archive
(a stamp file records its sha256), so a second call on a warm machine costs
well under a second. It also writes into the target:

* ``sitecustomize.py``: imports ``sglang_consumer_gpu._pth`` in every Python
  process whose ``PYTHONPATH`` holds the target, which is what the plugin's
  ``.pth`` file does in a pip install (a ``.pth`` is only read from
  site-packages, and the image's site-packages is left alone); it then runs
  the image's own ``sitecustomize``, if there is one;
* ``sglang_consumer_gpu-<version>.dist-info``: name, version and the
  ``sglang.srt.plugins`` entry point from the working tree's pyproject.toml,
  so SGLang's ``load_plugins()`` finds the plugin as it would after
  ``pip install``. The code itself is the working tree's (on PYTHONPATH).

Prints the ``export PYTHONPATH=...`` line, so a run command starts with:

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

import tomllib
from prepare_carry import sha256  # this folder is sys.path[0] when the script runs

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CARRY = REPO / ".carry" / "sglang-0.5.17"
STAMP = ".carry-archive-sha256"

SITECUSTOMIZE = '''"""Written by scripts/device/install_sglang.py: the plugin's .pth hook for a PYTHONPATH install."""
try:
    import sglang_consumer_gpu._pth  # noqa: F401
except ImportError:
    pass


def _chain():
    import importlib.machinery, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if p and os.path.abspath(p) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.origin and os.path.abspath(spec.origin) != os.path.abspath(__file__):
        with open(spec.origin) as f:
            exec(compile(f.read(), spec.origin, "exec"), {"__name__": "sitecustomize", "__file__": spec.origin})


_chain()
del _chain
'''


def _log(msg: str) -> None:
    print(f"install_sglang: {msg}", file=sys.stderr, flush=True)


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(dest, filter="data")


def unpack(carry: Path, target: Path) -> bool:
    """Unpack the archive unless ``target`` already holds it; True if it unpacked."""
    manifest = json.loads((carry / "MANIFEST.json").read_text())
    archive = carry / manifest["archive"]
    stamp = target / STAMP
    key = "+".join(manifest.get(p, {}).get("sha256", "-") for p in ("jit_sources", "jit_cache"))
    key = f"{manifest['archive_sha256']}+{key}"
    if stamp.is_file() and stamp.read_text().strip() == key:
        return False
    digest = sha256(archive)
    if digest != manifest["archive_sha256"]:
        raise SystemExit(f"install_sglang: {archive} sha256 {digest} != MANIFEST {manifest['archive_sha256']}")
    t0 = time.time()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _extract(archive, tmp)
    for part, dest in (("jit_sources", tmp), ("jit_cache", tmp / "_jit")):
        if part in manifest:  # flashinfer's JIT sources (fallback), built JIT modules (used first)
            path = carry / manifest[part]["file"]
            if sha256(path) != manifest[part]["sha256"]:
                raise SystemExit(f"install_sglang: {path} does not match its MANIFEST sha256")
            _extract(path, dest)
    aot = tmp / "_jit" / "flashinfer_aot"
    if aot.is_dir():  # flashinfer loads <package>/data/aot/<name>/<name>.so without sources or nvcc
        os.replace(aot, tmp / "flashinfer" / "data" / "aot")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    (target / STAMP).write_text(key + "\n")
    _log(f"unpacked {archive.name} ({manifest['installed_bytes'] / 2**20:.0f} MiB) into {target} in {time.time() - t0:.1f} s")
    return True


def write_plugin_files(target: Path) -> None:
    """sitecustomize.py and the plugin's dist-info (rewritten each call: cheap, follows the tree)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    dist = target / f"{name.replace('-', '_')}-{version}.dist-info"
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
        lines.append("")
    (dist / "entry_points.txt").write_text("\n".join(lines))
    (target / "sitecustomize.py").write_text(SITECUSTOMIZE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--carry", type=Path, default=DEFAULT_CARRY)
    ap.add_argument("--target", type=Path, default=Path("/tmp/site"))
    args = ap.parse_args()
    if not (args.carry / "MANIFEST.json").is_file():
        raise SystemExit(
            f"install_sglang: {args.carry}/MANIFEST.json not found: build it here with "
            "`python scripts/device/prepare_sglang.py` and name .carry/sglang-0.5.17 in the run call's carry"
        )
    if not unpack(args.carry, args.target):
        _log(f"{args.target} already holds this archive")
    write_plugin_files(args.target)
    path = f"{args.target}:{REPO}"
    print(f'export PYTHONPATH="{path}${{PYTHONPATH:+:$PYTHONPATH}}"')
    # SGLang's tvm-ffi JIT modules: content-addressed, reused from here; new ones are built here too
    print(f'export TVM_FFI_CACHE_DIR="{args.target}/_jit/tvm-ffi"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
