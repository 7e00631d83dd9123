"""The deterministic-inference attention default below Hopper: FA3 where it has no kernels.

What it changes: ``sglang.srt.arg_groups.overrides._deterministic_attention_backend``, the
resolution pass that picks the attention backend for ``--enable-deterministic-inference``
when no ``--attention-backend`` was given. The replacement runs SGLang's pass; if it chose a
backend with no kernels for the GPU and the model's kind of attention
(:func:`sglang_consumer_gpu.backends.steer_attention`), the pass answers ``triton`` instead,
with one log line. A backend the user passed is never touched: SGLang's pass only chooses
when ``attention_backend`` is still unset, and the replacement only rewrites such a choice.

Why: the pass gives sm_100/sm_120 FlashInfer (Triton for DeepSeek-style models) and every
other GPU ``fa3`` (``overrides.py:1100-1110``). FA3 has MHA kernels on sm_80-sm_89 but its MLA
kernels are Hopper-only, so DeepSeek-V2/V3-style models (``attention_arch == MLA``) stop at
startup on an RTX 3090/4090 or L40S with "FlashAttention v3 Backend requires SM>=80 and
SM<=90"; a T4 (sm_75) has no FA3 at all. Triton is in both of SGLang's deterministic lists
(``DETERMINISTIC_ATTENTION_BACKEND_CHOICES``, ``RADIX_SUPPORTED_DETERMINISTIC_ATTENTION_BACKEND``)
and is SGLang's own pick for these models on Blackwell.

Versions: SGLang 0.5.15 to 0.5.23 (the pass of the ``arg_groups`` resolution pipeline);
``attention_hook.handle_deterministic_inference`` calls it through a name imported from
``overrides``, which the post-import hook patches before that import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.backends import checks_backends, steer_attention
from sglang_consumer_gpu.errors import not_ours
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patches.backend_model_attention import MODULE
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.log import log_once

logger = logging.getLogger("sglang_consumer_gpu")

ATTR = "_deterministic_attention_backend"

def build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    def _deterministic_attention_backend(view: Any) -> Any:
        try:
            declared = original(view)
        except Exception as exc:
            raise not_ours(exc) from None
        spec = current_spec()
        chosen = declared.get("attention_backend") if isinstance(declared, dict) else None
        if spec is None or chosen is None or view.attention_backend is not None:
            return declared
        try:
            mla = bool(module.use_mla_backend(view))
        except Exception:
            mla = False
        steer = steer_attention(spec, chosen, mla=mla)
        if steer is None:
            return declared
        log_once(
            logger,
            (ATTR, steer.text()),
            logging.INFO,
            "sglang-consumer-gpu: deterministic inference on %s: SGLang's attention backend %s; "
            "pass --attention-backend to choose yourself",
            spec.arch_name,
            steer.text(),
        )
        return {**declared, "attention_backend": steer.to}

    return _deterministic_attention_backend


def explain(spec: GpuSpec) -> str:
    return "the --enable-deterministic-inference default fa3 becomes triton where FA3 has no kernels for the model"


PATCH = Patch(
    name="backend-deterministic-attention",
    seams=(Seam(">=0.5.15", MODULE, ATTR, ("view",)),),
    why="--enable-deterministic-inference picks fa3 below sm_100, which has no MLA kernels on sm_8x "
    "(DeepSeek-style models stop at startup) and no kernels at all on sm_75",
    build=build,
    needed_on=checks_backends,
    explain=explain,
)
