"""Patches used by the activation tests, loaded through
SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES=_probe_patches (tests/ on PYTHONPATH).

They target real SGLang 0.5.23 code: ``get_config_dtype_str`` lives in
fused_moe_triton_config and fused_moe.py imports it by name, which is exactly
the case the post-import hook and the re-binding must handle.
"""

from __future__ import annotations

from sglang_consumer_gpu.patching.base import Patch

CFG = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config"


def _passthrough(original, module):
    def probe(*args, **kwargs):
        return original(*args, **kwargs)

    return probe


def _explode(original, module):
    raise RuntimeError("boom: injected failure")


PATCHES = [
    Patch(name="probe", module=CFG, attr="get_config_dtype_str", why="test probe", build=_passthrough),
    Patch(name="missing_attr", module=CFG, attr="no_such_function", why="target moved", build=_passthrough),
    Patch(
        name="missing_module",
        module="sglang.srt.no_such_module",
        attr="f",
        why="module moved",
        build=_passthrough,
    ),
    Patch(name="raises", module=CFG, attr="get_default_config", why="build raises", build=_explode),
]
