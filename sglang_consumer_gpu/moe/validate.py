"""Checks a fused-MoE config file before SGLang ever sees it.

A config file is data from outside the plugin (a user's tuning run, a file
copied from a forum post, a harvested release): it is parsed as JSON only
(never executed or unpickled), and every entry must have SGLang's keys with
sane values, respect block-quant constraints and fit the GPU's shared memory
by the analytic upper bound. A file with any bad entry is rejected as a
whole, with a message naming the entry and the problem, so the lookup moves
on to the next source instead of handing SGLang a tile that crashes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.smem import estimate_shared

REQUIRED_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M")
OPTIONAL_KEYS = ("num_warps", "num_stages", "num_ctas", "USE_TMA")
_MAX_FILE_BYTES = 1 << 20  # real files are a few KB
_BLOCK_RANGE = {"BLOCK_SIZE_M": (16, 256), "BLOCK_SIZE_N": (16, 512), "BLOCK_SIZE_K": (16, 512)}

Configs = dict[int, dict[str, Any]]


class ConfigFileError(ValueError):
    """A config file or entry that must not be used; the message says why."""


def _is_pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def check_entry(
    cfg: Any,
    *,
    dtype: str | None,
    block_shape: tuple[int, int] | None,
    spec: GpuSpec | None,
) -> dict[str, Any]:
    """Return a clean copy of one entry or raise ConfigFileError."""
    if not isinstance(cfg, Mapping):
        raise ConfigFileError(f"entry is a {type(cfg).__name__}, not an object")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ConfigFileError(f"missing key(s) {', '.join(missing)}")
    unknown = sorted(set(cfg) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ConfigFileError(f"unknown key(s) {', '.join(unknown)} (the kernel would reject them)")
    out: dict[str, Any] = {}
    for key in (*REQUIRED_KEYS, "num_warps", "num_stages", "num_ctas"):
        if key not in cfg:
            continue
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigFileError(f"{key}={v!r} is not an integer")
        out[key] = v
    for key, (lo, hi) in _BLOCK_RANGE.items():
        v = out[key]
        if not _is_pow2(v) or not lo <= v <= hi:
            raise ConfigFileError(f"{key}={v} must be a power of two in [{lo}, {hi}]")
    if out["GROUP_SIZE_M"] < 1:
        raise ConfigFileError(f"GROUP_SIZE_M={out['GROUP_SIZE_M']} must be >= 1")
    if "num_warps" in out and out["num_warps"] not in (1, 2, 4, 8, 16, 32):
        raise ConfigFileError(f"num_warps={out['num_warps']} must be a power of two <= 32")
    if "num_stages" in out and not 1 <= out["num_stages"] <= 8:
        raise ConfigFileError(f"num_stages={out['num_stages']} must be in [1, 8]")
    if out.get("num_ctas", 1) != 1:
        raise ConfigFileError(f"num_ctas={out['num_ctas']}: thread-block clusters need sm_90+")
    if "USE_TMA" in cfg:
        if not isinstance(cfg["USE_TMA"], bool):
            raise ConfigFileError(f"USE_TMA={cfg['USE_TMA']!r} is not true/false")
        out["USE_TMA"] = cfg["USE_TMA"]
    if block_shape is not None and all(block_shape):
        bn, bk = block_shape
        if bk % out["BLOCK_SIZE_K"]:
            raise ConfigFileError(
                f"BLOCK_SIZE_K={out['BLOCK_SIZE_K']} does not divide the quant block's K ({bk}): "
                "the kernel reads one scale per K tile"
            )
        if out["BLOCK_SIZE_N"] < bn and bn % out["BLOCK_SIZE_N"]:
            raise ConfigFileError(
                f"BLOCK_SIZE_N={out['BLOCK_SIZE_N']} does not divide the quant block's N ({bn})"
            )
    if spec is not None:
        need = estimate_shared(out, dtype, block_shape, spec.capability)
        if need > spec.smem_per_block_optin:
            raise ConfigFileError(
                f"needs ~{need} bytes of shared memory, {spec.name} has {spec.smem_per_block_optin}"
            )
    return out


def parse_configs(
    data: Any,
    *,
    dtype: str | None,
    block_shape: tuple[int, int] | None,
    spec: GpuSpec | None,
) -> Configs:
    """Validate a decoded JSON document: ``{"<batch size>": {entry}, ...}``."""
    if not isinstance(data, Mapping):
        raise ConfigFileError(f"top level is a {type(data).__name__}, not an object of batch sizes")
    if not data:
        raise ConfigFileError("no entries")
    out: Configs = {}
    for key, cfg in data.items():
        try:
            m = int(key)
        except (TypeError, ValueError):
            raise ConfigFileError(f"key {key!r} is not a batch size") from None
        if m <= 0:
            raise ConfigFileError(f"batch size {m} must be positive")
        try:
            out[m] = check_entry(cfg, dtype=dtype, block_shape=block_shape, spec=spec)
        except ConfigFileError as exc:
            raise ConfigFileError(f"entry {key}: {exc}") from None
    return dict(sorted(out.items()))


def load_config_file(
    path: Path,
    *,
    dtype: str | None,
    block_shape: tuple[int, int] | None,
    spec: GpuSpec | None,
) -> Configs:
    """Read and validate one file; ConfigFileError says what is wrong with it."""
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise ConfigFileError(f"{size} bytes is too large for a config file")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigFileError("not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    return parse_configs(data, dtype=dtype, block_shape=block_shape, spec=spec)
