"""Build ``.carry/sglang-0.5.17/``: a full SGLang 0.5.17 server install for the device machine.

The device machine (H100/H200, Python 3.12.3, torch 2.11.0+cu130, Triton 3.6.0)
has no SGLang and no package registry, and one ``run`` call carries at most
64 MiB (working tree included). SGLang 0.5.17 is the release that pins the
image's torch (2.11.0). This script, run HERE (where pip works):

1. downloads, with ``pip download --no-deps`` (pip checks each file against the
   index's sha256), the cp312 manylinux wheels in ``WHEELS``: SGLang, its kernel
   wheel and every package the server imports that the device image lacks
   (or has at a version SGLang's pins exclude);
2. unpacks them into one site directory, leaving out the files in each
   wheel's ``drop`` list (native libraries this run never loads: FlashAttention 3,
   the sm_100 build, JIT sources, a static C++ library, opt-in Rust servers);
3. packs that directory into ``site.tar.xz`` (sorted, fixed mtimes: the same
   input gives the same archive) and writes ``MANIFEST.json``: every wheel's
   file name, sha256, size, why it is carried and what was dropped, plus the
   archive's sha256 and size.

With ``--jit-sources`` it also packs flashinfer's JIT sources, and with
``--jit-cache TGZ`` the JIT modules a device run built (flashinfer's ``norm``,
SGLang's tvm-ffi kernels), so a fresh device machine compiles none of them.
On the device, ``scripts/device/install_sglang.py`` unpacks it all into /tmp/site.
No stand-in modules are needed (README_sglang017.md says why).

Usage: ``python scripts/device/prepare_sglang.py --jit-sources --jit-cache .carry/device-builds/jit_cache_h200_2026-12-01.tgz``
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from prepare_carry import sha256  # this folder is sys.path[0] when the script runs

SGLANG_VERSION = "0.5.17"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".carry" / f"sglang-{SGLANG_VERSION}"
WHEEL_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sglang-consumer-gpu" / "wheels"
)
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_26_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)


@dataclass(frozen=True)
class Wheel:
    spec: str  # name==version (SGLang 0.5.17's pin where it has one, else what pip resolves for it)
    why: str  # who imports it on the server's path
    drop: tuple[str, ...] = ()  # glob patterns (paths inside the wheel) left out


WHEELS: tuple[Wheel, ...] = (
    Wheel(
        "sglang==0.5.17",
        "SGLang itself (every Python file kept)",
        drop=(
            # opt-in native extensions, never loaded by launch_server/bench_one_batch here:
            "sglang/srt/server/_core.*.so",  # embedded Rust server, only with SGLANG_RUST_SERVER
            "sglang/srt/grpc/_core.*.so",  # native gRPC server, only with --grpc-port
            "sglang/srt/multimodal/_core.*.so",  # Rust image preprocessing, only with SGLANG_INKLING_RS_MM_PREPROCESS
        ),
    ),
    Wheel(
        "sglang-kernel==0.4.5",
        "sgl_kernel: SGLang imports it on CUDA (rmsnorm, silu_and_mul, topk_softmax, moe_align_block_size, ...)",
        drop=(
            "sgl_kernel/flash_ops.abi3.so",  # FlashAttention 3 (1.12 GB): only for --attention-backend fa3
            "sgl_kernel/sm100/*",  # the build loaded on GPUs other than sm_90
            "sgl_kernel/flashmla_ops.abi3.so",  # FlashMLA (MLA models), imported in a try block
            "sgl_kernel/infllm_ops.*.so",  # InfLLM-V2 attention, loaded on first call only
        ),
    ),
    Wheel(
        "flashinfer-python==0.6.15.post1",
        "fp8_utils does `from flashinfer import bmm_fp8` on CUDA (module level); sgl_kernel's rmsnorm and "
        "fused_add_rmsnorm call flashinfer.norm whenever flashinfer imports (its JIT module 'norm')",
        # JIT sources: in jit_sources.tar.xz (--jit-sources), the built 'norm' module in jit_cache.tar.xz
        drop=("flashinfer/data/*",),
    ),
    Wheel(
        "apache-tvm-ffi==0.1.11",
        "tvm_ffi: imported by flashinfer and xgrammar; SGLang's JIT kernels compile against its headers (pin 0.1.11)",
    ),
    Wheel(
        "transformers==5.12.1",
        "SGLang pins it; the image's 5.17.0 already registers 'qwen3_asr', so SGLang's AutoConfig.register raises",
    ),
    Wheel("tokenizers==0.22.2", "transformers 5.12.1 requires tokenizers<=0.23.0 (image: 0.23.2) at import"),
    Wheel(
        "xgrammar==0.2.1",
        "server_args -> function_call_parser imports xgrammar.StructuralTag (SGLang pins 0.2.1)",
        drop=("xgrammar/lib/*",),  # libxgrammar.a: static library for C++ users, never loaded by Python
    ),
    Wheel("fastapi==0.165.0", "http_server"),
    Wheel("starlette==1.10.0", "fastapi, http_server"),
    Wheel("opentelemetry-api==1.45.2", "fastapi 0.165 (fastapi.telemetry)"),
    Wheel("uvicorn==0.54.0", "http_server runs on it"),
    Wheel("python-multipart==0.0.34", "fastapi form endpoints declared by http_server"),
    Wheel("pydantic==2.14.4", "fastapi, openai protocol models, server_args"),
    Wheel("pydantic-core==2.50.5", "pydantic 2.14.4's exact pin"),
    Wheel("annotated-types==0.8.0", "pydantic"),
    Wheel("typing-inspection==0.4.5", "pydantic"),
    Wheel("pyzmq==27.3.0", "IPC between tokenizer manager, scheduler and detokenizer"),
    Wheel("orjson==3.13.0", "sglang.srt.utils.common"),
    Wheel("pybase64==1.5.1", "sglang.srt.utils.common"),
    Wheel("msgspec==0.23.0", "SGLang kernel-metadata modules on the import path (module level)"),
    Wheel("setproctitle==1.3.8", "scheduler/detokenizer process titles"),
    Wheel("ipython==9.18.1", "sglang.utils: from IPython.display import HTML, display"),
    Wheel("traitlets==5.16.1", "IPython"),
    Wheel("openai==2.6.1", "entrypoints.openai.protocol, harmony_utils (module level; SGLang pins 2.6.1)"),
    Wheel("sniffio==1.3.1", "openai"),
    Wheel("distro==1.9.0", "openai"),
    Wheel("partial-json-parser==0.2.1.1.post7", "function_call parsers"),
    Wheel("compressed-tensors==0.20.1", "sglang.srt.layers.quantization (module level)"),
    Wheel("gguf==0.19.0", "sglang.srt.model_loader.weight_utils, layers.quantization.gguf (module level)"),
    Wheel("loguru==0.7.3", "sglang.srt.checkpoint_engine.update (module level, on the server's import path)"),
    Wheel("dill==0.4.1", "sglang.srt.sampling.custom_logit_processor (module level)"),
    Wheel("jsonschema==4.26.0", "sglang.srt.entrypoints.openai.serving_chat (module level)"),
    Wheel("jsonschema-specifications==2025.9.1", "jsonschema"),
    Wheel("referencing==0.37.0", "jsonschema"),
    Wheel("rpds-py==2026.9.1", "referencing"),
    Wheel(
        "soundfile==0.13.1",
        "entrypoints.openai.realtime.session (imported by http_server) does `import soundfile` at module level",
    ),
    Wheel("cffi==2.1.1", "soundfile's libsndfile binding"),
    Wheel("datasets==5.2.0", "sglang.bench_serving (its dataset loaders, module level)"),
    Wheel("multiprocess==0.70.19", "datasets"),
)


def pip_download(spec: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec,
           "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd, check=True)
    name, _, version = spec.partition("==")
    norm = name.replace("-", "_").lower()
    hits = [p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{norm}-{version}-")]
    if not hits:
        raise FileNotFoundError(f"pip saved no wheel for {spec} in {dest}")
    return sorted(hits)[-1]


def _target_name(member: str) -> str | None:
    """Where a wheel member goes in the site dir (pip's layout); None to skip."""
    top, _, rest = member.partition("/")
    if top.endswith(".data"):
        kind, _, inner = rest.partition("/")
        return inner if kind in ("purelib", "platlib") and inner else None  # scripts/headers/data: not needed
    return member


def unpack(whl: Path, wheel: Wheel, site: Path) -> dict:
    kept = dropped = 0
    dropped_files: list[str] = []
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if any(fnmatch.fnmatch(info.filename, p) for p in wheel.drop):
                dropped += info.file_size
                dropped_files.append(info.filename)
                continue
            name = _target_name(info.filename)
            if name is None:
                continue
            out = site / name
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            if info.external_attr >> 16 & 0o111:
                out.chmod(0o755)
            kept += info.file_size
    unmatched = [p for p in wheel.drop if not any(fnmatch.fnmatch(f, p) for f in dropped_files)]
    if unmatched:
        raise RuntimeError(f"{whl.name}: drop patterns match nothing: {unmatched} (the wheel changed?)")
    return {"kept_bytes": kept, "dropped_bytes": dropped, "dropped_files": sorted(dropped_files)}


def pack(site: Path, archive: Path, preset: int) -> None:
    """A reproducible tar.xz of ``site`` (sorted members, mtime 0, owner root)."""
    tmp = archive.with_suffix(".tmp")
    with lzma.open(tmp, "wb", preset=preset) as xz, tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(site.rglob("*")):
            if path.is_dir():
                continue
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(site)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, archive)


def build(out: Path, preset: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="sglang017-site-") as tmp:
        site = Path(tmp) / "site"
        for wheel in WHEELS:
            whl = pip_download(wheel.spec, WHEEL_CACHE)
            info = unpack(whl, wheel, site)
            entries.append({"spec": wheel.spec, "file": whl.name, "sha256": sha256(whl),
                            "wheel_bytes": whl.stat().st_size, "why": wheel.why, "drop": list(wheel.drop), **info})
            print(f"{wheel.spec:40s} kept {info['kept_bytes'] / 2**20:7.1f} MiB"
                  f"  dropped {info['dropped_bytes'] / 2**20:7.1f} MiB", file=sys.stderr)
        installed = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
        print(f"packing {installed / 2**20:.0f} MiB (xz preset {preset}) ...", file=sys.stderr)
        archive = out / "site.tar.xz"
        pack(site, archive, preset)
    manifest = {
        "sglang_version": SGLANG_VERSION,
        "python": "cp312 manylinux x86-64 (device: Python 3.12.3, torch 2.11.0+cu130, Triton 3.6.0)",
        "archive": archive.name,
        "archive_sha256": sha256(archive),
        "archive_bytes": archive.stat().st_size,
        "installed_bytes": installed,
        "stand_ins": [],
        "wheels": entries,
    }
    tmp_manifest = out / "MANIFEST.json.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp_manifest, out / "MANIFEST.json")
    return manifest


def pack_jit_sources(out: Path, preset: int) -> dict:
    """``jit_sources.tar.xz``: flashinfer's JIT sources (``flashinfer/data``, dropped from the site),
    for the one device call that builds the JIT cache (``--jit-cache``)."""
    wheel = next(w for w in WHEELS if w.spec.startswith("flashinfer-python=="))
    whl = pip_download(wheel.spec, WHEEL_CACHE)
    with tempfile.TemporaryDirectory(prefix="flashinfer-src-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(whl) as zf:
            for info in zf.infolist():
                if info.filename.startswith("flashinfer/data/") and not info.is_dir():
                    zf.extract(info, root)
        archive = out / "jit_sources.tar.xz"
        pack(root, archive, preset)
    return {"file": archive.name, "sha256": sha256(archive), "bytes": archive.stat().st_size, "from": whl.name}


def pack_jit_cache(src: Path, out: Path, preset: int) -> dict:
    """``jit_cache.tar.xz`` from a device run's ``jit_cache.tgz`` (see README_sglang017.md):
    flashinfer's built modules as ``flashinfer_aot/<name>/<name>.so`` (flashinfer's AOT layout,
    loaded without sources or a compiler) and SGLang's tvm-ffi JIT modules as
    ``tvm-ffi/<dir>/<name>.so`` (its content-addressed cache layout)."""
    with tempfile.TemporaryDirectory(prefix="jit-cache-") as tmp:
        root = Path(tmp)
        files = []
        with tarfile.open(src) as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if not m.isfile() or not m.name.endswith(".so"):
                    continue
                if parts[0] == "flashinfer" and "cached_ops" in parts:
                    name = parts[parts.index("cached_ops") + 1]
                    dest = root / "flashinfer_aot" / name / Path(m.name).name
                elif parts[0] == "tvm-ffi":
                    dest = root.joinpath(*parts)
                else:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as f:
                    dest.write_bytes(f.read())
                files.append(str(dest.relative_to(root)))
        archive = out / "jit_cache.tar.xz"
        pack(root, archive, preset)
    return {"file": archive.name, "sha256": sha256(archive), "bytes": archive.stat().st_size,
            "built_from": src.name, "files": sorted(files)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--xz-preset", type=int, default=6, help="xz level (6: ~100 s on 2 cores; 9: smaller, slower)")
    ap.add_argument("--no-site", action="store_true", help="keep the existing site.tar.xz and MANIFEST entries")
    ap.add_argument("--jit-sources", action="store_true", help="also write jit_sources.tar.xz (flashinfer/data)")
    ap.add_argument("--jit-cache", type=Path, metavar="TGZ", help="repack a device run's jit_cache.tgz into the carry")
    args = ap.parse_args()
    manifest_path = args.out / "MANIFEST.json"
    m = json.loads(manifest_path.read_text()) if args.no_site else build(args.out, args.xz_preset)
    if args.jit_sources:
        m["jit_sources"] = pack_jit_sources(args.out, args.xz_preset)
    if args.jit_cache:
        m["jit_cache"] = pack_jit_cache(args.jit_cache, args.out, args.xz_preset)
    tmp_manifest = manifest_path.with_suffix(".json.tmp")
    tmp_manifest.write_text(json.dumps(m, indent=1) + "\n")
    os.replace(tmp_manifest, manifest_path)
    print(json.dumps({k: m[k] for k in ("archive", "archive_bytes", "installed_bytes", "archive_sha256")}))
    for part in ("jit_sources", "jit_cache"):
        if part in m:
            print(json.dumps({part: {k: m[part][k] for k in ("file", "bytes", "sha256")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
