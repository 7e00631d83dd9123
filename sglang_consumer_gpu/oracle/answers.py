"""SGLang's answers on a virtual GPU, kept on disk so that asking again skips importing SGLang.

Importing SGLang is most of a ``doctor --model`` run: 10-15 s on a 2-core machine for its
argument pipeline (its model config imports every quantization method, FlashInfer and
transformers' patches) and several more for its fused-MoE modules and torch, against a few
seconds for everything the plugin then does with the answers. The answers -- a launch's
resolution or SGLang's refusal of it (``planner.sglang_edge``), the fused-MoE configs SGLang
alone picks for a shape (``families.moe``) -- are pure functions of what their key holds:
the kind of answer and the caller's parts (GPU spec, model files, flags, shape...), plus, for
every answer, SGLang's and Triton's versions, the plugin's own files (path, size and
modification time: code and bundled configs) and the ``SGLANG_*`` variables the user set
(SGLang reads its switches from the environment). Any of them changing is a new key, so a
stale answer is never shown.

Entries are pickles under ``cache_root()/answers``, one per key, written to a temporary file
and renamed; an entry that cannot be read, or that the caller's ``accept`` refuses, is a miss
(the question is asked again and the entry rewritten). The directory is the plugin's per-user
cache (``cli/caches.py`` moves it when it cannot be written). ``SGLANG_CONSUMER_GPU_ANSWER_CACHE=0``
turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.oracle.cache import cache_key
from sglang_consumer_gpu.versions import installed_version

logger = logging.getLogger(__name__)

#: A directory's files that go into a key (a model's JSON configs, a tuned-config directory):
#: at most this many bytes each.
_MAX_FILE_BYTES = 4 * 2**20


@functools.lru_cache(maxsize=1)
def _plugin_fingerprint() -> str:
    """The plugin's files (code and bundled configs) as a hash of each one's path, size and
    modification time (no reads)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            st = p.stat()
            h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _sglang_environment() -> dict[str, str]:
    """SGLang's variables as the user set them: read at the first question of the process,
    because SGLang's resolution writes its own defaults into the environment
    (``SGLANG_ENABLE_TORCH_COMPILE=0`` and others), which a later run that answers from the
    cache, without SGLang, would not have."""
    return {k: v for k, v in os.environ.items() if k.startswith("SGLANG_") and not k.startswith("SGLANG_CONSUMER_GPU")}


def files_of(directory: str | Path | None, pattern: str = "*.json") -> dict[str, str]:
    """SHA-256 of each file of ``directory`` matching ``pattern`` (a key part: what SGLang reads there)."""
    out: dict[str, str] = {}
    if not directory:
        return out
    with contextlib.suppress(OSError):
        for p in sorted(Path(directory).glob(pattern)):
            if p.is_file() and p.stat().st_size <= _MAX_FILE_BYTES:
                out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def key(kind: str, **parts: Any) -> str | None:
    """The key of one answer, or None when the cache is off or SGLang's version cannot be read."""
    sglang = installed_version("sglang")
    if os.environ.get(settings.ANSWER_CACHE, "1").strip().lower() in settings.OFF_VALUES or not sglang:
        return None
    return cache_key(answer=kind, sglang=sglang, triton=installed_version("triton"), plugin=_plugin_fingerprint(),
                     env=_sglang_environment(), **parts)  # fmt: skip


def _path(k: str) -> Path:
    return settings.cache_root() / "answers" / k[:2] / f"{k}.pickle"


def get(k: str | None, accept: Callable[[Any], bool]) -> Any:
    """The answer stored under ``k`` if ``accept`` takes it, else None."""
    if k is None:
        return None
    try:
        value = pickle.loads(_path(k).read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt or foreign entry is a miss, and is rewritten
        logger.info("answer cache: ignoring unreadable entry %s (%s)", _path(k), exc)
        return None
    if not accept(value):
        logger.info("answer cache: ignoring entry %s of an unexpected type", _path(k))
        return None
    return value


def put(k: str | None, value: Any) -> None:
    """Remember an answer (a write that fails costs speed only)."""
    if k is None:
        return
    path = _path(k)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pickle")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        logger.debug("answer cache: cannot write %s: %s", path, exc)
