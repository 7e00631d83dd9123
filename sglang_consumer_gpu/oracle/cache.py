"""On-disk cache of compile-only results, so repeated checks skip Triton.

One JSON file per compiled kernel under ``settings.cache_root()/oracle``,
named by a SHA-256 over everything that decides the compiled kernel: the
kernel's source hash (Triton's ``JITFunction.cache_key``, which covers the
functions it calls), the Triton version, the target (``cuda:89:32``), the
argument specialisation (dtypes, alignment, divisibility, constexpr values)
and the compile options (``num_warps``, ``num_stages``, ...). Shared memory
differs between Triton versions, so the version is part of the key.

Entries are never trusted blindly: one that is too large, not UTF-8, does not
parse (nested too deep included), lacks a field, has a wrong type or names
another key is ignored (a miss; the caller compiles and the entry is
rewritten), so a corrupt entry costs one compile, never a false FAIL. Writes go to a temporary file in the same
directory and are renamed over the target, so a reader never sees half a file.
Set ``SGLANG_CONSUMER_GPU_ORACLE_CACHE=0`` to bypass it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import settings

logger = logging.getLogger(__name__)

#: Environment switch: 0/false/off disables the on-disk cache.
CACHE_SWITCH = "SGLANG_CONSUMER_GPU_ORACLE_CACHE"
#: Bump when the entry format or the key's meaning changes.
FORMAT = 1
#: Fields every entry must have, with their types.
FIELDS: dict[str, type] = {"kernel": str, "shared": int, "num_warps": int, "num_stages": int}
#: An entry is a few hundred bytes; anything much larger is not one of ours.
_MAX_ENTRY_BYTES = 64 * 1024


def cache_key(**parts: Any) -> str:
    """SHA-256 over ``parts`` (JSON, sorted keys; non-JSON values via ``str``)."""
    blob = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class CompileCache:
    """Compile results on disk plus an in-process layer; thread-safe."""

    root: Path
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    _memory: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if key in self._memory:
                self.hits += 1
                return self._memory[key]
        entry = self._read(key)
        with self._lock:
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
                self._memory[key] = entry
        return entry

    def _read(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.debug("oracle cache: cannot read %s: %s", path, exc)
            return None
        try:
            entry = json.loads(raw.decode("utf-8")) if len(raw) <= _MAX_ENTRY_BYTES else None
            valid = (
                isinstance(entry, dict)
                and entry.get("key") == key
                and all(type(entry.get(name)) is typ for name, typ in FIELDS.items())
                and entry["shared"] >= 0
            )
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            valid = False
        if not valid:
            with self._lock:
                self.corrupt += 1
            logger.info("oracle cache: ignoring corrupt entry %s (it will be rewritten)", path)
            return None
        return entry

    def put(self, key: str, value: dict[str, Any]) -> None:
        entry = {**value, "key": key}
        with self._lock:
            self._memory[key] = entry
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(entry, f, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:  # a read-only or full disk costs speed, not correctness
            logger.debug("oracle cache: cannot write %s: %s", path, exc)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}


_default: list[CompileCache] = []
_default_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get(CACHE_SWITCH, "1").strip().lower() not in {"0", "false", "off", "no"}


def default_cache() -> CompileCache | None:
    """The process-wide cache at ``cache_root()/oracle`` (None when disabled).
    Re-created when the cache directory setting changes (tests point it elsewhere)."""
    if not enabled():
        return None
    root = settings.cache_root() / "oracle"
    with _default_lock:
        if not _default or _default[0].root != root:
            _default[:] = [CompileCache(root)]
        return _default[0]
