"""Harvest measured fused-MoE configs for consumer/workstation GPUs from SGLang and vLLM wheels.

Only measured data counts as a tuned config. SGLang and vLLM ship the JSON
files their users tuned (``tuning_fused_moe_triton.py`` / ``benchmark_moe.py``)
inside their wheels. This script:

1. ``pip download --no-deps`` a handful of releases (``RELEASES``) into a cache
   outside the repo (pip checks each wheel against PyPI's hashes);
2. reads every fused-MoE config in them whose ``device_name`` is a GPU of the
   plugin's catalog with ~99 KB of shared memory per block (sm_86, sm_89,
   sm_120: RTX 3090/4090/5090, L4, L40/L40S, RTX 6000 Ada, A10, A40, RTX A6000,
   RTX PRO 6000 Blackwell, ...); other consumer names it sees are listed in the
   manifest as ``unknown_devices`` so the catalog can grow;
3. normalises vLLM files to SGLang's naming (``block_shape=[128, 128]``);
4. keeps one file per SGLang file name: the SGLang file of the newest Triton
   directory, else the newest vLLM release's;
5. checks every entry with the compile-only oracle for that GPU under the
   installed Triton (both GEMMs; K=4096, shared memory does not depend on K):
   an entry that does not fit is repaired with fewer stages, or dropped;
6. writes ``sglang_consumer_gpu/moe/configs/*.json`` and ``manifest.json``
   (project, release, original path, Triton directory, sha256, repairs, drops).

Usage: ``PYTHONPATH=$PWD:$PYTHONPATH python scripts/harvest_moe_configs.py [--cache DIR] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "sglang_consumer_gpu" / "moe" / "configs"
#: A handful of releases: together they carry every consumer-GPU file either
#: project has published (files are rarely removed, so the newest releases
#: carry most; the older ones catch files that moved or were dropped).
RELEASES = (
    ("sglang", "0.4.10.post2"),
    ("sglang", "0.5.10"),
    ("sglang", "0.5.23"),
    ("vllm", "0.10.2"),
    ("vllm", "0.33.0"),
)
NAME_RE = re.compile(
    r"^E=(?P<E>\d+),N=(?P<N>\d+),device_name=(?P<dev>.+?)"
    r"(?:,dtype=(?P<dtype>[a-z0-9_]+))?"
    r"(?:,block_shape=\[(?P<bn>\d+), ?(?P<bk>\d+)\])?"
    r"(?P<pcq>,per_channel_quant=True)?(?P<down>_down)?\.json$"
)
CONFIG_DIRS = (
    re.compile(
        r"^sglang/srt/layers/moe/(?:fused_moe_triton|moe_runner/triton_utils)/configs/(?:(triton_[\d_]+)/)?[^/]+\.json$"
    ),
    re.compile(r"^vllm/model_executor/layers/fused_moe/configs/[^/]+\.json$"),
)
CONSUMER_HINT = re.compile(r"GeForce|RTX|_L4|_L40|_L20|_A10|_A40|A6000|A5000|A4000", re.I)
KEY_ORDER = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def download(cache: Path) -> list[tuple[str, str, Path]]:
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for project, version in RELEASES:
        have = sorted(cache.glob(f"{project}-{version}-*.whl"))
        if not have:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    f"{project}=={version}",
                    "-d",
                    str(cache),
                ],
                check=True,
            )
            have = sorted(cache.glob(f"{project}-{version}-*.whl"))
        if not have:
            raise SystemExit(f"pip did not produce a wheel for {project}=={version}")
        out.append((project, version, have[0]))
    return out


def canonical_name(m: re.Match[str]) -> str:
    dtype = f",dtype={m['dtype']}" if m["dtype"] else ""
    block = f",block_shape=[{m['bn']}, {m['bk']}]" if m["bn"] else ""
    return f"E={m['E']},N={m['N']},device_name={m['dev']}{dtype}{block}{m['pcq'] or ''}{m['down'] or ''}.json"


def _triton_key(d: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in d.removeprefix("triton_").split("_")) if d else ()


def collect(wheels: list[tuple[str, str, Path]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    from sglang_consumer_gpu.hardware import KNOWN_GPUS

    consumer = {g.name.replace(" ", "_"): g for g in KNOWN_GPUS if g.is_low_smem and g.arch in (86, 89, 120)}
    found: dict[str, list[dict[str, Any]]] = {}
    unknown: dict[str, int] = {}
    for project, version, wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for path in zf.namelist():
                hit = next((r.match(path) for r in CONFIG_DIRS if r.match(path)), None)
                if hit is None:
                    continue
                m = NAME_RE.match(path.rsplit("/", 1)[1])
                if m is None:
                    continue
                dev = m["dev"]
                if dev not in consumer:
                    if CONSUMER_HINT.search(dev) and not re.search(
                        r"H100|H200|H20|A100|A800|B200|GB200", dev
                    ):
                        unknown[dev] = unknown.get(dev, 0) + 1
                    continue
                raw = zf.read(path)
                found.setdefault(canonical_name(m), []).append(
                    {
                        "project": project,
                        "release": version,
                        "original_path": path,
                        "triton_dir": hit.group(1) if hit.groups() else None,
                        "sha256": hashlib.sha256(raw).hexdigest(),
                        "device": consumer[dev].name,
                        "arch": consumer[dev].arch_name,
                        "raw": raw.decode("utf-8"),
                        "dtype": m["dtype"],
                        "block_shape": [int(m["bn"]), int(m["bk"])] if m["bn"] else None,
                        "per_channel_quant": bool(m["pcq"]),
                        "E": int(m["E"]),
                        "N": int(m["N"]),
                    }
                )
    return found, unknown


def pick(cands: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """SGLang file of the newest Triton dir; else the newest vLLM release (distinct contents only)."""

    def rank(c: dict[str, Any]) -> tuple[Any, ...]:
        rel = tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.]|post", c["release"]))
        return (c["project"] == "sglang", _triton_key(c["triton_dir"]), rel)

    ordered = sorted(cands, key=rank, reverse=True)
    best = ordered[0]
    others = []
    seen = {best["sha256"]}
    for c in ordered[1:]:
        if c["sha256"] not in seen:
            seen.add(c["sha256"])
            others.append({k: c[k] for k in ("project", "release", "original_path", "triton_dir", "sha256")})
    return best, others


def _oracle(item: tuple[str, str | None, Any, bool, dict[str, int]]) -> int | str:
    gpu, dtype, block, pcq, cfg = item
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.shape import MoeShape
    from sglang_consumer_gpu.oracle.kernels.moe import layer_shared as oracle_shared

    try:
        shape = MoeShape(64, 1024, 4096, 8, dtype, tuple(block) if block else None, pcq)
        return oracle_shared(find_gpu(gpu), shape, 64, cfg)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def check_and_repair(files: dict[str, dict[str, Any]], jobs: int) -> None:
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.validate import ConfigFileError, check_entry

    todo: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for f in files.values():
        f["entries"], f["problems"] = {}, []
        try:
            data = json.loads(f["raw"])
        except json.JSONDecodeError as exc:
            f["problems"].append(f"not JSON: {exc}")
            continue
        for m, cfg in data.items():
            try:
                clean = check_entry(cfg, dtype=f["dtype"], block_shape=f["block_shape"], spec=None)
            except ConfigFileError as exc:
                f["problems"].append(f"entry {m}: {exc}")
                continue
            clean = {k: clean[k] for k in KEY_ORDER if k in clean}
            f["entries"][int(m)] = clean
            for stages in range(clean.get("num_stages", 3), 0, -1):
                c = {**clean, "num_stages": stages}
                key = (
                    f["device"],
                    f["dtype"],
                    json.dumps(f["block_shape"]),
                    f["per_channel_quant"],
                    json.dumps(c, sort_keys=True),
                )
                todo[key] = (f["device"], f["dtype"], f["block_shape"], f["per_channel_quant"], c)
    keys = list(todo)
    print(f"oracle: {len(keys)} distinct (GPU, dtype, config) compiles", flush=True)
    with ProcessPoolExecutor(jobs) as pool:
        shared = dict(zip(keys, pool.map(_oracle, [todo[k] for k in keys], chunksize=4), strict=True))
    for f in files.values():
        spec = find_gpu(f["device"])
        f["repaired"], f["dropped"], f["shared"] = [], [], {}
        for m in sorted(f["entries"]):
            cfg = f["entries"][m]
            kept = None
            for stages in range(cfg.get("num_stages", 3), 0, -1):
                c = {**cfg, "num_stages": stages}
                key = (
                    f["device"],
                    f["dtype"],
                    json.dumps(f["block_shape"]),
                    f["per_channel_quant"],
                    json.dumps(c, sort_keys=True),
                )
                sh = shared[key]
                if isinstance(sh, str):
                    f["dropped"].append(
                        {
                            "M": m,
                            "config": cfg,
                            "reason": f"oracle could not compile it for {spec.arch_name}: {sh}",
                        }
                    )
                    break
                if sh <= spec.smem_per_block_optin:
                    kept = (c, sh)
                    break
            if kept is None:
                if not f["dropped"] or f["dropped"][-1]["M"] != m:
                    f["dropped"].append({"M": m, "config": cfg, "reason": "does not fit at any num_stages"})
                del f["entries"][m]
                continue
            c, sh = kept
            if c["num_stages"] != cfg.get("num_stages", 3):
                f["repaired"].append(
                    {"M": m, "num_stages": [cfg.get("num_stages", 3), c["num_stages"]], "shared": sh}
                )
            f["entries"][m] = c
            f["shared"][m] = sh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sglang-consumer-gpu" / "harvest")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    a = ap.parse_args()
    from sglang_consumer_gpu.versions import installed_version

    wheels = download(a.cache)
    found, unknown = collect(wheels)
    files: dict[str, dict[str, Any]] = {}
    for name, cands in sorted(found.items()):
        best, others = pick(cands)
        files[name] = {**best, "alternatives": others}
    check_and_repair(files, a.jobs)
    a.out.mkdir(parents=True, exist_ok=True)
    for old in a.out.glob("*.json"):
        old.unlink()
    manifest: dict[str, Any] = {
        "generated_by": "scripts/harvest_moe_configs.py",
        "generated_at": time.strftime("%Y-%m-%d"),
        "checked_with": {"triton": installed_version("triton"), "sglang": installed_version("sglang")},
        "releases": [{"project": p, "release": v, "wheel": w.name} for p, v, w in wheels],
        "rule": "every entry compiled for its GPU's arch by the compile-only oracle (both GEMMs, K=4096); "
        "entries over the GPU's shared memory repaired with fewer num_stages, else dropped",
        "files": {},
        "rejected_files": {},
        "unknown_devices": dict(sorted(unknown.items())),
    }
    for name, f in sorted(files.items()):
        meta = {
            k: f[k]
            for k in (
                "device",
                "arch",
                "project",
                "release",
                "original_path",
                "triton_dir",
                "sha256",
                "dtype",
                "block_shape",
                "per_channel_quant",
                "E",
                "N",
            )
        }
        meta.update(
            entries=len(f["entries"]),
            repaired=f["repaired"],
            dropped=f["dropped"],
            problems=f["problems"],
            max_shared=max(f["shared"].values(), default=None),
            alternatives=f["alternatives"],
        )
        if not f["entries"]:
            manifest["rejected_files"][name] = meta
            continue
        body = {str(m): f["entries"][m] for m in sorted(f["entries"])}
        (a.out / name).write_text(json.dumps(body, indent=4) + "\n")
        manifest["files"][name] = meta
    (a.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    n_rep = sum(len(m["repaired"]) for m in manifest["files"].values())
    n_drop = sum(len(m["dropped"]) for m in manifest["files"].values())
    print(
        f"bundled {len(manifest['files'])} files ({sum(m['entries'] for m in manifest['files'].values())} entries; "
        f"{n_rep} repaired, {n_drop} dropped), rejected {len(manifest['rejected_files'])} files; "
        f"unknown consumer-looking devices: {len(unknown)}"
    )


if __name__ == "__main__":
    main()
