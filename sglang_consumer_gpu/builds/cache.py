"""What was read from a file, remembered on disk until the file changes.

Walking ``libtorch_cuda.so`` takes 30 ms with its pages in memory but 0.6-0.8 s
cold (``flash_ops.abi3.so``: 0.76 s), and ``ptxas --help`` / ``nvcc
--list-gpu-arch`` start a process each; ``doctor`` answers in about a second,
so each answer is kept under ``settings.cache_root()/builds``, keyed by the
file's resolved path, size and modification time (a reinstalled wheel is read
again). A cache that cannot be written (read-only ``HOME``) only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import settings

#: Bump when a reader changes what it returns, so old entries are read again.
FORMAT = 1


def _key(kind: str, path: Path) -> dict[str, Any] | None:
    try:
        real = path.resolve()
        st = real.stat()
    except OSError:
        return None
    return {"kind": kind, "path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "format": FORMAT}


def _file(key: dict[str, Any]) -> Path:
    digest = hashlib.sha1(f"{key['kind']}\0{key['path']}".encode()).hexdigest()[:20]
    return settings.cache_root() / "builds" / f"{key['kind']}-{digest}.json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cached(kind: str, path: Path, read: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``read(path)``, or what it returned last time for this very file.

    ``read`` returns plain JSON data; a failure it wants remembered (a corrupt
    file stays corrupt until it changes) it returns as data too, and one it
    raises (a tool that timed out) is not remembered."""
    key = _key(kind, path)
    if key is None:
        return read(path)
    where = _file(key)
    with contextlib.suppress(OSError, ValueError):
        entry = json.loads(where.read_text(encoding="utf-8"))
        if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("value"), dict):
            return entry["value"]
    value = read(path)
    with contextlib.suppress(OSError):
        _write_atomic(where, json.dumps({"key": key, "value": value}, sort_keys=True))
    return value
