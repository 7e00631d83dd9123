"""The plugin's answer to "which fused-MoE config for this layer and batch?".

Order: user directory -> ``$SGLANG_MOE_CONFIG_DIR`` -> bundled -> SGLang's own
files, for the name SGLang asks for and then for the name variants whose tiles
its kernel runs alike (:func:`~.sources.name_variants`: an int8 file tuned
before ``,per_channel_quant=True`` existed, per-tensor and block fp8) ->
shared-memory-aware heuristic (see :mod:`.sources`). Each file is
validated for the GPU (:mod:`.validate`); a bad or unfit file -- or a
directory, a dangling or looping symlink, anything unreadable where a file of
that name should be -- is skipped with a warning naming it and the problem,
and the next source is tried. The lookup never raises: it runs inside
SGLang's own call, and an exception there would cost every other layer its
config too. The source used is logged once per (E, N, dtype, ...) key. A
user-tuned file used under another Triton version than it was tuned with (its
``triton_X_Y_Z`` directory, or for a flat file the version ``tune-moe``
recorded beside it) is logged once per file as a WARNING: it still fits, but
may no longer be fastest.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.shape import MoeShape, dtype_label
from sglang_consumer_gpu.moe.sources import (
    ConfigKey,
    candidates,
    config_file_name,
    dir_unreadable,
    name_variants,
)
from sglang_consumer_gpu.moe.validate import ConfigFileError, Configs, load_config_file
from sglang_consumer_gpu.versions import installed_version

logger = logging.getLogger("sglang_consumer_gpu.moe")

#: ``tune-moe`` keeps its records of a config file in this directory beside it.
TUNE_DIR = ".tune-moe"

#: Dtypes the heuristic chooses tiles for (they run ``fused_moe_kernel``);
#: for the others SGLang's own default (small tiles) stays.
HEURISTIC_DTYPES: frozenset[str | None] = frozenset({None, "fp8_w8a8", "int8_w8a8"})


@dataclass(frozen=True)
class FileLookup:
    """Result of the file part of the lookup for one key."""

    source: str  # "user", "sglang-env", "bundled", "sglang" or "none"
    path: str | None
    configs: Configs | None
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (path, problem)
    #: when the file is a name variant: the name SGLang asked for, and why the variant's tiles serve it
    asked_for: str | None = None
    because: str | None = None


@dataclass(frozen=True)
class Choice:
    """The config used for one batch size, and where it came from."""

    M: int
    config: dict[str, Any]
    source: str  # a FileLookup source, or "heuristic" / "sglang-default"
    path: str | None
    file_batch: int | None  # the batch size of the file entry used
    asked_for: str | None = None  # a name variant's file: the name SGLang asked for ...
    because: str | None = None  # ... and why the variant's tiles serve it


def _env_state() -> tuple[str, str]:
    return str(settings.user_moe_config_dir()), os.environ.get("SGLANG_MOE_CONFIG_DIR", "")


def _present(path: Path) -> str | None:
    """None if nothing is at ``path`` (or its directory cannot be searched, which
    :func:`~.sources.dir_unreadable` reports once), "" for a regular file, else
    why it cannot be one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "is a dangling symlink" if path.is_symlink() else None
    except NotADirectoryError:
        return None
    except OSError as exc:
        if dir_unreadable(path.parent, exc):
            return None
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a config file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    return ""


@functools.lru_cache(maxsize=1024)
def _find(key: ConfigKey, spec: GpuSpec, _env: tuple[str, str]) -> FileLookup:
    skipped: list[tuple[str, str]] = []
    found = _first_valid(key, key, spec, skipped)
    for variant in name_variants(key) if found is None else ():
        found = _first_valid(variant.key, key, spec, None)
        if found is not None:
            source, path, configs = found
            return FileLookup(source, path, configs, tuple(skipped), config_file_name(key, spec.name), variant.because)
    if found is None:
        return FileLookup("none", None, None, tuple(skipped))
    return FileLookup(*found, tuple(skipped))


def _first_valid(
    name_key: ConfigKey, key: ConfigKey, spec: GpuSpec, skipped: list[tuple[str, str]] | None
) -> tuple[str, str, Configs] | None:
    """(source, path, configs) of the first file named for ``name_key`` that is valid for ``key``'s
    kernel on ``spec`` (the layout SGLang will run it with), recording the ones skipped; with
    ``skipped`` None (a name variant) a file that does not serve this layout is no problem of the
    file's, and is only logged at DEBUG."""
    seen: set[Path] = set()
    for source, path in candidates(name_key, spec.name):
        if path in seen:
            continue
        seen.add(path)
        problem = _present(path)
        if problem is None:
            continue
        configs = None
        if not problem:
            try:
                configs = load_config_file(path, dtype=key.dtype, block_shape=key.block_shape, spec=spec)
            except ConfigFileError as exc:
                problem = str(exc)
        if configs is None:
            if skipped is None:
                logger.debug("sglang-consumer-gpu: MoE config %s does not serve %s: %s", path, key, problem)
                continue
            logger.warning(
                "sglang-consumer-gpu: skipping MoE config %s: %s; trying the next source", path, problem
            )
            skipped.append((str(path), problem))
            continue
        if source == "user":
            _warn_if_tuned_elsewhere(path)
        return source, str(path), configs
    return None


def tuning_record_path(config_file: Path) -> Path:
    """The sidecar ``tune-moe`` writes for a config file (Triton version, GPU, report); the
    config file itself holds only SGLang's keys (SGLang reads every key as a batch size)."""
    return config_file.parent / TUNE_DIR / f"{config_file.name}.tuning.json"


def tuned_triton_version(config_file: Path) -> str | None:
    """The Triton version a user file was tuned under: its ``triton_X_Y_Z`` directory, else the
    sidecar's record, else None (unknown)."""
    parent = config_file.parent.name
    if parent.startswith("triton_"):
        return parent.removeprefix("triton_").replace("_", ".")
    try:
        record = json.loads(tuning_record_path(config_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    version = record.get("triton") if isinstance(record, dict) else None
    return version if isinstance(version, str) else None


_warned_versions: set[str] = set()


def _warn_if_tuned_elsewhere(path: Path) -> None:
    installed = (installed_version("triton") or "").split("+")[0]
    tuned = tuned_triton_version(path)
    if not tuned or not installed or tuned.split("+")[0] == installed or str(path) in _warned_versions:
        return
    _warned_versions.add(str(path))
    logger.warning(
        "sglang-consumer-gpu: MoE config %s was tuned under Triton %s, this is Triton %s: it fits, but "
        "may no longer be the fastest; re-run `sglang-consumer-gpu tune-moe` for this model",
        path,
        tuned,
        installed,
    )


def find_configs(key: ConfigKey, spec: GpuSpec) -> FileLookup:
    """The first valid config file for ``key`` on ``spec`` (cached; re-read when
    the user/SGLang config directory variables change). Never raises."""
    try:
        return _find(key, spec, _env_state())
    except Exception as exc:  # last line of defence: a lookup failure must not reach SGLang
        logger.warning(
            "sglang-consumer-gpu: MoE config lookup for E=%s, N=%s failed (%s: %s); no file is used",
            key.E,
            key.N,
            type(exc).__name__,
            exc,
        )
        return FileLookup("none", None, None, ((str(settings.user_moe_config_dir()), str(exc)),))


def clear_cache() -> None:
    from sglang_consumer_gpu.moe import sources

    _find.cache_clear()
    _logged.clear()
    sources._unlistable.clear()
    _warned_versions.clear()


_logged: set[tuple[Any, ...]] = set()


def log_source_once(
    key: ConfigKey, spec: GpuSpec, source: str, path: str | None, found: FileLookup | None = None
) -> None:
    ident = (key, spec.name, source, path)
    if ident in _logged:
        return
    _logged.add(ident)
    what = f"E={key.E}, N={key.N}, dtype={dtype_label(key.dtype)}"
    if key.block_shape:
        what += f", block_shape={list(key.block_shape)}"
    if key.down_moe:
        what += ", down"
    where = f"from {path}" if path else "(no file for this GPU)"
    if found is not None and found.asked_for:
        where += f" (asked for {found.asked_for}; this file serves it because {found.because})"
    logger.info("sglang-consumer-gpu: fused MoE %s on %s: %s config %s", what, spec.name, source, where)


def nearest(configs: Configs, M: int) -> int:
    """SGLang's rule: the file entry whose batch size is closest to M."""
    return min(configs, key=lambda m: abs(m - M))


def choose(M: int, shape: MoeShape, spec: GpuSpec) -> Choice:
    """What SGLang will run for ``M`` tokens once the plugin is active (the up
    projection's config; the down projection uses it too unless a ``_down``
    file exists)."""
    bn, bk = shape.block_shape or (0, 0)
    key = ConfigKey(shape.E, shape.N, shape.dtype, bn, bk, shape.per_channel_quant)
    found = find_configs(key, spec)
    if found.configs:
        m = nearest(found.configs, M)
        return Choice(M, dict(found.configs[m]), found.source, found.path, m, found.asked_for, found.because)
    if shape.dtype in HEURISTIC_DTYPES:
        return Choice(M, heuristic_config(M, shape, spec), "heuristic", None, None)
    return Choice(M, {}, "sglang-default", None, None)
