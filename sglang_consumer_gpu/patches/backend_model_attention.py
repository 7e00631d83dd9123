"""Per-model attention defaults that name a backend with no kernels for the GPU: steer to Triton.

What it changes: ``sglang.srt.arg_groups.overrides.collect_model_override_declarations``,
which gathers what each model family's override provider (``arg_groups/model_overrides/*.py``)
declares during server-argument resolution. The replacement runs SGLang's function, then
looks at every ``attention_backend`` / ``prefill_attention_backend`` /
``decode_attention_backend`` a provider declared: where the backend has no kernels for the
GPU (:func:`sglang_consumer_gpu.backends.steer_attention`) and the user did not pass that flag
(the ``ServerArgs`` field still holds ``None``), the declaration says ``triton`` instead, with
one log line per model and backend. Every other declaration is SGLang's, unchanged.

Why: the providers of Olmo 2/3 (``olmo2.py:27``) and EXAONE 4 / EXAONE-MoE (``exaone.py:26``)
pick ``fa3`` for ``device_sm >= 80``, which includes sm_120; sgl-kernel builds FlashAttention-3
for sm_80-sm_90 only and SGLang's ``fa3`` backend asserts "FlashAttention v3 Backend requires
SM>=80 and SM<=90" when the model runner starts, so an RTX 5090 / RTX PRO 6000 stops at
startup. The ``else`` branch of both providers, the one below sm_80, is ``triton``.

Versions: the per-model provider registry and this collector exist from SGLang 0.5.15 (the
resolution pipeline of ``arg_groups``); before that the same choices are inline in
``ServerArgs`` methods and the patch reports "version not covered". ``model_hook`` imports the
collector by name; the post-import hook patches it before that import (and the registry
re-binds copies already made).

Upstream-fix detection: per call. Once SGLang's providers pick a backend that runs, nothing
is steered and the patch changes nothing.
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
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.log import log_once

logger = logging.getLogger("sglang_consumer_gpu")

MODULE = "sglang.srt.arg_groups.overrides"
ATTR = "collect_model_override_declarations"
FIELDS = ("attention_backend", "prefill_attention_backend", "decode_attention_backend")
#: Where SGLang tells hybrid linear-attention models (Gated DeltaNet: Qwen3-Next; KDA: Kimi
#: Linear) from the rest, ``hybrid_gdn_config`` / ``hybrid_kda_config`` of a model config; the
#: backends family reads it for ``doctor --model`` (their layers' kernels).
HYBRID_ARCH = Seam(">=0.5.16", "sglang.srt.configs.hybrid_arch", "hybrid_gdn_config")

def _is_mla(module: ModuleType, server_args: Any) -> bool:
    """SGLang's own answer (``use_mla_backend``); an MHA model when it cannot tell."""
    try:
        return bool(module.use_mla_backend(server_args))
    except Exception:
        return False


def steer_declarations(
    spec: GpuSpec, architecture: str, declarations: list[Any], user: dict[str, Any], mla: bool
) -> list[Any]:
    """``declarations`` with each attention backend the user left unset and ``spec`` has no
    kernels for replaced by the plugin's pick (pure but for the one log line per choice)."""
    out = []
    for source, declared in declarations:
        new = dict(declared)
        for field in FIELDS:
            if field not in new or user.get(field) is not None:
                continue
            steer = steer_attention(spec, new[field], mla=mla)
            if steer is None:
                continue
            new[field] = steer.to
            log_once(
                logger,
                (architecture, field, steer.text()),
                logging.INFO,
                "sglang-consumer-gpu: %s on %s: SGLang's %s %s; pass --%s to choose yourself",
                architecture,
                spec.arch_name,
                field.replace("_", " "),
                steer.text(),
                field.replace("_", "-"),
            )
        out.append((source, new))
    return out


def build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    def collect_model_override_declarations(architecture: str, server_args: Any, hf_config: Any) -> Any:
        try:
            declarations = original(architecture, server_args, hf_config)
        except Exception as exc:
            raise not_ours(exc) from None
        spec = current_spec()
        if spec is None or not isinstance(declarations, list):
            return declarations
        user = {field: getattr(server_args, field, None) for field in FIELDS}
        return steer_declarations(spec, architecture, declarations, user, _is_mla(module, server_args))

    return collect_model_override_declarations


def explain(spec: GpuSpec) -> str:
    return (
        "per-model attention defaults without kernels here (fa3 on sm_120, fa3 MLA below sm_90, "
        "trtllm-gen off sm_100) become triton"
    )


PATCH = Patch(
    name="backend-model-attention",
    seams=(Seam(">=0.5.15", MODULE, ATTR, ("architecture", "server_args", "hf_config")),),
    why="model defaults pick attention backends with no kernels for the GPU (Olmo 2/3 and EXAONE 4: "
    "fa3 on sm_120, 'FlashAttention v3 Backend requires SM>=80 and SM<=90' at startup)",
    build=build,
    needed_on=checks_backends,
    explain=explain,
)
