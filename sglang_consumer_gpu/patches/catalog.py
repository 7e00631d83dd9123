"""The built-in patches (plus any named in SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES), one module each. Adding a patch = adding its module here.

Each module defines ``PATCH`` (a :class:`~sglang_consumer_gpu.patches.base.Patch`)
or ``PATCHES`` (a list of them) and imports nothing heavy at module level.
An extra module is outside the plugin's control: one that fails to import
(even by calling ``sys.exit()``), defines neither name, or holds anything but
well-formed patches is skipped with a WARNING naming it, and a patch whose
name is taken is skipped too; the other modules' patches are unaffected.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.patches.base import Patch, Seam

logger = logging.getLogger("sglang_consumer_gpu")

BUILTIN_PATCH_MODULES: tuple[str, ...] = (
    "sglang_consumer_gpu.patches.moe_config",
    "sglang_consumer_gpu.patches.attention_extend",
    "sglang_consumer_gpu.patches.attention_prefill",
    "sglang_consumer_gpu.patches.int8_scaled_mm",
    "sglang_consumer_gpu.patches.backend_model_attention",
    "sglang_consumer_gpu.patches.backend_deterministic_attention",
    "sglang_consumer_gpu.patches.mxfp4_marlin_gate",
    "sglang_consumer_gpu.patches.safety_net",
)


def _problem(patch: Any) -> str:
    """Why ``patch`` cannot be registered ("" if it can)."""
    if not isinstance(patch, Patch):
        return f"{type(patch).__name__} {patch!r:.60} is not a Patch"
    if not isinstance(patch.name, str) or not patch.name:
        return f"patch name {patch.name!r} is not a non-empty string"
    if not callable(patch.build) or not callable(patch.needed_on) or not callable(patch.upstream_fixed):
        return f"patch {patch.name}: build/needed_on/upstream_fixed must be callable"
    try:
        seams = patch.all_seams()
    except Exception as exc:
        return f"patch {patch.name}: bad seams ({exc})"
    for seam in seams:
        if not isinstance(seam, Seam) or not all(
            isinstance(v, str) for v in (seam.sglang, seam.module, seam.attr)
        ):
            return f"patch {patch.name}: {seam!r:.80} is not a Seam of strings"
        if not seam.module or not seam.attr:
            return f"patch {patch.name}: no target module/attribute"
    return ""


def _declared(name: str, mod: Any) -> Iterable[Any] | str:
    """The patches a module declares, or why it declares none usable."""
    if hasattr(mod, "PATCHES"):
        found = mod.PATCHES
        if not isinstance(found, (list, tuple)):
            return f"PATCHES is a {type(found).__name__}, not a list of Patch"
        return found
    if hasattr(mod, "PATCH"):
        return [mod.PATCH]
    return "it defines neither PATCH nor PATCHES"


def builtin_patches() -> list[Patch]:
    out: list[Patch] = []
    names: set[str] = set()
    for module_name in (*BUILTIN_PATCH_MODULES, *settings.extra_patch_modules()):
        try:
            mod = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:  # a broken patch module must not stop the others
            logger.warning(
                "sglang-consumer-gpu: patch module %s skipped: importing it raised %s: %s",
                module_name,
                type(exc).__name__,
                exc,
            )
            continue
        declared = _declared(module_name, mod)
        if isinstance(declared, str):
            logger.warning("sglang-consumer-gpu: patch module %s skipped: %s", module_name, declared)
            continue
        for patch in declared:
            try:
                problem = _problem(patch) or (
                    f"a patch named {patch.name} exists already" if patch.name in names else ""
                )
            except Exception as exc:
                problem = f"cannot inspect {type(patch).__name__}: {exc}"
            if problem:
                logger.warning(
                    "sglang-consumer-gpu: patch module %s: one patch skipped: %s", module_name, problem
                )
                continue
            names.add(patch.name)
            out.append(patch)
    return out
