"""Checks a fused-MoE config file before SGLang ever sees it.

A config file is data from outside the plugin (a user's tuning run, a file
copied from a forum post, a harvested release): it is parsed as JSON only
(never executed or unpickled), and every entry must have SGLang's keys with
sane values, respect block-quant constraints and fit the GPU's shared memory
by the analytic upper bound. A file with any bad entry is rejected as a
whole, with a message naming every bad entry and its problem, so the lookup
moves on to the next source instead of handing SGLang a tile that crashes it.

Parsing is bounded before :mod:`json` sees the text (size, nesting depth,
length of a number), and :func:`load_config_file` raises nothing but
:class:`ConfigFileError`: a hostile file costs a log line, never the lookup.
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
_MAX_DEPTH = 8  # a config file nests 2 deep: {"batch": {"KEY": value}}
_MAX_NUMBER_CHARS = 20  # digits of any number (the largest real value is a batch size, ~6 digits)
_MAX_KEY_CHARS = 32
_BLOCK_RANGE = {"BLOCK_SIZE_M": (16, 256), "BLOCK_SIZE_N": (16, 512), "BLOCK_SIZE_K": (16, 512)}

Configs = dict[int, dict[str, Any]]


def tile_label(config: Mapping[str, Any] | None) -> str:
    """``BMxBNxBK gG wW sS`` (Triton's defaults where a key is absent); ``-`` for none."""
    if not config:
        return "-"
    c = {"GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 3, **config}
    return "{BLOCK_SIZE_M}x{BLOCK_SIZE_N}x{BLOCK_SIZE_K} g{GROUP_SIZE_M} w{num_warps} s{num_stages}".format(**c)


def pair_label(up: Mapping[str, Any] | None, down: Mapping[str, Any] | None) -> str:
    """The up GEMM's tile, and the down GEMM's where it has its own (``_down`` file)."""
    return tile_label(up) + (f" | down {tile_label(down)}" if down and down != up else "")


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
    problems: list[str] = []
    for key, cfg in data.items():
        shown = f"{key[:_MAX_KEY_CHARS]}..." if isinstance(key, str) and len(key) > _MAX_KEY_CHARS else key
        if not isinstance(key, str) or len(key) > _MAX_KEY_CHARS or not key.strip().isdigit():
            problems.append(f"key {shown!r} is not a batch size")
            continue
        m = int(key)
        if m <= 0:
            problems.append(f"batch size {m} must be positive")
            continue
        try:
            out[m] = check_entry(cfg, dtype=dtype, block_shape=block_shape, spec=spec)
        except ConfigFileError as exc:
            problems.append(f"entry {key}: {exc}")
    if problems:
        head = f"{len(problems)} bad entries: " if len(problems) > 1 else ""
        raise ConfigFileError(head + "; ".join(problems))
    return dict(sorted(out.items()))


def _check_text(text: str) -> None:
    """Reject what would make :func:`json.loads` recurse deeply or build huge
    integers, before it runs (a 100,000-deep array raises RecursionError in
    json, a 5,000-digit integer raises ValueError)."""
    depth = 0
    number = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "0123456789":
            number += 1
            if number > _MAX_NUMBER_CHARS:
                raise ConfigFileError(f"a number longer than {_MAX_NUMBER_CHARS} digits")
            continue
        number = 0
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                raise ConfigFileError(f"nested more than {_MAX_DEPTH} levels deep")
        elif ch in "]}":
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise ConfigFileError(f"{name} is not a valid value")


def load_config_file(
    path: Path,
    *,
    dtype: str | None,
    block_shape: tuple[int, int] | None,
    spec: GpuSpec | None,
) -> Configs:
    """Read and validate one file; ConfigFileError (and nothing else) says what is wrong with it."""
    try:
        return _load(path, dtype=dtype, block_shape=block_shape, spec=spec)
    except ConfigFileError:
        raise
    except Exception as exc:  # anything a hostile file can still provoke
        raise ConfigFileError(f"cannot be used ({type(exc).__name__}: {str(exc)[:200]})") from None


def _load(
    path: Path,
    *,
    dtype: str | None,
    block_shape: tuple[int, int] | None,
    spec: GpuSpec | None,
) -> Configs:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise ConfigFileError("is a directory, not a file") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigFileError(f"larger than {_MAX_FILE_BYTES} bytes, too large for a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError("not UTF-8 text") from None
    _check_text(text)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    return parse_configs(data, dtype=dtype, block_shape=block_shape, spec=spec)
