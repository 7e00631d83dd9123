"""Check a carried SGLang install: the server's modules import, and from where.

Run with the PYTHONPATH that ``install_sglang.py`` printed. Imports the modules a
``launch_server`` / ``bench_one_batch`` / ``bench_serving`` run needs, in one
interpreter, and prints JSON: per module ``ok`` or the error and where it was
raised; which top-level packages came from the carry and which from the image;
whether ``python -m sglang.launch_server --help`` exits 0; whether the
plugin's hook ran and its entry point is registered.

``--fake-h200`` (a machine with no GPU, e.g. to validate a new carry here):
makes torch report one H200 and puts a stub ``libcuda.so.1`` (built with cc)
on the loader path so ``sgl_kernel``'s sm_90 library loads, so SGLang takes the
same CUDA import paths as on the device. Nothing is run on a GPU.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

MODULES = (
    "sglang.srt.entrypoints.http_server",
    "sglang.launch_server",
    "sglang.srt.managers.scheduler",
    "sglang.srt.managers.detokenizer_manager",
    "sglang.srt.managers.tokenizer_manager",
    "sglang.srt.model_executor.model_runner",
    "sglang.srt.models.qwen3_moe",
    "sglang.srt.layers.attention.triton_backend",
    "sglang.srt.layers.moe.moe_runner.triton",
    "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe",
    "sglang.srt.layers.moe.fused_moe_triton.layer",
    "sglang.srt.layers.sampler",
    "sglang.bench_one_batch",
    "sglang.bench_serving",
)

FAKE_TORCH = """
import types, torch
_p = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=150_754_820_096,
    multi_processor_count=132, shared_memory_per_block_optin=232448, L2_cache_size=60 * 2**20, warp_size=32,
    gcnArchName="", uuid="fake", is_integrated=False, regs_per_multiprocessor=65536,
    max_threads_per_multi_processor=2048)
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
torch.cuda.current_device = lambda: 0
torch.cuda.get_device_capability = lambda *a, **k: (9, 0)
torch.cuda.get_device_properties = lambda *a, **k: _p
torch.cuda.get_device_name = lambda *a, **k: "NVIDIA H200"
"""

STUB_LIBCUDA = "int cuPointerGetAttribute(void *d, int a, unsigned long long p) { return 1; }\n"


def _origin(path: str, site: str) -> str:
    if path.startswith(site):
        return "carry"
    return "image" if "site-packages" in path or "dist-packages" in path else "stdlib/other"


def check(site: str) -> dict:
    results: dict[str, str] = {}
    for name in MODULES:
        t0 = time.time()
        try:
            importlib.import_module(name)
            results[name] = f"ok ({time.time() - t0:.1f} s)"
        except BaseException as exc:  # report, do not stop: the next module may still import
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)[-3:])
            results[name] = f"{type(exc).__name__}: {str(exc)[:300]} @ {where}"
    origins: dict[str, set[str]] = {"carry": set(), "image": set()}
    for mod_name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None) or ""
        kind = _origin(path, site)
        if kind in origins:
            origins[kind].add(mod_name.split(".")[0])
    from importlib import metadata

    return {
        "imports": results,
        "all_ok": all(v.startswith("ok") for v in results.values()),
        "from_carry": sorted(origins["carry"]),
        "from_image": sorted(origins["image"]),
        "plugin_hook_ran": "sglang_consumer_gpu._pth" in sys.modules,
        "plugin_entry_point": [
            ep.value for ep in metadata.entry_points(group="sglang.srt.plugins") if "sglang_consumer_gpu" in ep.value
        ],
        "versions": {d: _version(d) for d in ("sglang", "sglang-kernel", "flashinfer-python", "transformers",
                                              "tokenizers", "torch", "triton", "numpy")},
    }


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", default="/tmp/site", help="the carry's install directory (to tell carry from image)")
    ap.add_argument("--fake-h200", action="store_true", help="no GPU here: take SGLang's CUDA import paths anyway")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fake_h200 and not args._child:
        stub = Path(tempfile.mkdtemp(prefix="stub-libcuda-"))
        (stub / "stub.c").write_text(STUB_LIBCUDA)
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(stub / "libcuda.so.1"), str(stub / "stub.c")], check=True)
        env = {**os.environ, "LD_LIBRARY_PATH": f"{stub}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
        return subprocess.run([sys.executable, *sys.argv, "--_child"], env=env).returncode
    if args.fake_h200:
        exec(FAKE_TORCH, {})
    t0 = time.time()
    report = check(os.path.abspath(args.site))
    report["import_seconds"] = round(time.time() - t0, 1)
    help_run = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--help"], capture_output=True, text=True)
    report["launch_server_help_rc"] = help_run.returncode
    report["launch_server_help_tail"] = (help_run.stdout + help_run.stderr).strip().splitlines()[-1:] or [""]
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["all_ok"] and help_run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
