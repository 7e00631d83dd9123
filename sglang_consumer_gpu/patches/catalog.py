"""The built-in patches (plus any named in SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES), one module each. Adding a patch = adding its module here.

Each module defines ``PATCH`` (a :class:`~sglang_consumer_gpu.patches.base.Patch`)
or ``PATCHES`` (a list of them) and imports nothing heavy at module level.
"""

from __future__ import annotations

import importlib
import logging

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.patches.base import Patch

logger = logging.getLogger("sglang_consumer_gpu")

BUILTIN_PATCH_MODULES: tuple[str, ...] = (
    "sglang_consumer_gpu.patches.moe_config",
    "sglang_consumer_gpu.patches.attention_extend",
    "sglang_consumer_gpu.patches.attention_prefill",
    "sglang_consumer_gpu.patches.int8_scaled_mm",
)


def builtin_patches() -> list[Patch]:
    out: list[Patch] = []
    for name in (*BUILTIN_PATCH_MODULES, *settings.extra_patch_modules()):
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # a broken patch module must not stop the others
            logger.warning("sglang-consumer-gpu: could not load patch module %s: %s", name, exc)
            continue
        out.extend(getattr(mod, "PATCHES", [getattr(mod, "PATCH", None)]))
    return [p for p in out if p is not None]
