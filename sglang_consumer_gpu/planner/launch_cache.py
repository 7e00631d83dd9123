"""SGLang's resolutions of launches, kept on disk so that asking again skips importing SGLang.

Importing SGLang's argument pipeline is most of a ``doctor --model`` run: 10-15 s on a 2-core
machine (its model config imports every quantization method, FlashInfer and transformers'
patches), against a few seconds for everything the plugin then does with the answer. The
answer, a :class:`~sglang_consumer_gpu.models.launch.Launch` or SGLang's refusal, is a pure
function of what the key holds: SGLang's version, the plugin's own code (every module's size
and modification time), the GPU spec, the model directory's JSON files, the flags, the GPU
memory and every ``SGLANG_*`` variable the user set (SGLang reads its switches from the environment). Any of
them changing is a new key, so a stale answer is never shown.

Entries are pickles under ``cache_root()/launches``, one per key, written to a temporary file
and renamed; an entry that cannot be read or unpickled to the expected type is a miss (the
launch is resolved again and the entry rewritten). The directory is the plugin's per-user
cache (``cli/caches.py`` moves it when it cannot be written). ``SGLANG_CONSUMER_GPU_LAUNCH_CACHE=0``
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
from collections.abc import Sequence
from pathlib import Path

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.launch import Launch
from sglang_consumer_gpu.oracle.cache import cache_key
from sglang_consumer_gpu.versions import installed_version

logger = logging.getLogger(__name__)

#: The model directory's files SGLang's resolution may read: its JSON configs (config.json,
#: generation_config.json, hf_quant_config.json, ...), each at most this large.
_MAX_JSON_BYTES = 4 * 2**20
#: The refusals an entry may hold (``planner.sglang_edge``'s exception classes, by name).
REFUSALS = ("SglangRejects", "InvalidValue")


@functools.lru_cache(maxsize=1)
def _plugin_fingerprint() -> str:
    """The plugin's code as a hash of every module's path, size and modification time (no reads)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
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


def _model_files(model_dir: str) -> dict[str, str]:
    out = {}
    with contextlib.suppress(OSError):
        for p in sorted(Path(model_dir).glob("*.json")):
            if p.is_file() and p.stat().st_size <= _MAX_JSON_BYTES:
                out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def key(spec: GpuSpec, model_dir: str, argv: Sequence[str], gpu_bytes: float) -> str | None:
    """The entry's key, or None when the cache is off or SGLang's version cannot be read."""
    sglang = installed_version("sglang")
    if os.environ.get(settings.LAUNCH_CACHE, "1").strip().lower() in settings.OFF_VALUES or not sglang:
        return None
    return cache_key(answer="sglang-launch", sglang=sglang, plugin=_plugin_fingerprint(), spec=spec.to_dict(),
                     model=_model_files(model_dir), argv=list(argv), gpu_bytes=gpu_bytes,
                     env=_sglang_environment())  # fmt: skip


def _path(k: str) -> Path:
    return settings.cache_root() / "launches" / k[:2] / f"{k}.pickle"


def get(k: str | None) -> Launch | tuple[str, str] | None:
    """The cached answer: a ``Launch``, or (refusal class name, SGLang's message); None on a miss."""
    if k is None:
        return None
    try:
        value = pickle.loads(_path(k).read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt or foreign entry is a miss, and is rewritten
        logger.info("launch cache: ignoring unreadable entry %s (%s)", _path(k), exc)
        return None
    if isinstance(value, Launch):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] in REFUSALS and isinstance(value[1], str):
        return value
    logger.info("launch cache: ignoring entry %s of an unexpected type", _path(k))
    return None


def put(k: str | None, value: Launch | tuple[str, str]) -> None:
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
        logger.debug("launch cache: cannot write %s: %s", path, exc)
