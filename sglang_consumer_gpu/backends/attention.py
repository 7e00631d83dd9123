"""Attention backends: does SGLang's choice have kernels for this GPU, and if not, what instead.

SGLang's selection code (``get_default_attn_backend``, the per-model overrides, the
deterministic-inference default) is written for sm_90 and sm_100 and reaches the rest by
``else`` branches and capability ranges such as ``device_sm >= 80``. Some of those land a
consumer GPU on a backend whose kernels are not built for it: FA3 on sm_120 (Olmo 2/3,
EXAONE 4) or FA3's MLA path on sm_86/sm_89 (deterministic inference of DeepSeek-style
models); the server then stops at startup. The plugin answers only for the backends it has
facts about; any other backend is SGLang's business.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_consumer_gpu.hardware.spec import GpuSpec

#: What the plugin picks instead: SGLang's Triton attention compiles for every sm_75+ GPU,
#: serves MHA and MLA models, and is the ``else`` branch of each SGLang choice it replaces.
FALLBACK = "triton"


def checks_backends(spec: GpuSpec) -> bool:
    """Whether SGLang's backend choices are re-checked on this GPU: every architecture but
    the data-center ones SGLang selects for (sm_90, sm_100/103, sm_110), which are left alone."""
    return spec.capability[0] not in (9, 10, 11)


def attention_runs(spec: GpuSpec, backend: str, *, mla: bool) -> bool | None:
    """Whether ``backend`` has kernels for ``spec`` and this kind of attention (None: no fact
    about this backend; FlashInfer, Triton, FA4, torch and the vendor backends are among them)."""
    if backend == "fa3":
        return spec.has_fa3_mla if mla else spec.has_fa3
    if backend == "trtllm_mha":
        return not mla and (spec.has_trtllm_gen or spec.has_xqa)
    if backend in ("trtllm_mla", "cutedsl_mla"):
        return mla and spec.has_trtllm_gen
    if backend == "flashmla":
        return mla and spec.has_flashmla
    return None


def why_no_kernels(spec: GpuSpec, backend: str, *, mla: bool) -> str:
    """Why ``backend`` has no kernels for ``spec`` (for a backend :func:`attention_runs` says False)."""
    if backend == "fa3" and mla and spec.has_fa3:
        return f"FA3's MLA kernels are built for sm_90 only, not {spec.arch_name}"
    if backend == "fa3":
        return f"sgl-kernel builds FA3 for sm_80-sm_90 only, not {spec.arch_name}"
    if backend == "trtllm_mha" and mla:
        return "trtllm_mha serves non-MLA models only"
    if backend == "trtllm_mha":
        return f"its kernels (trtllm-gen, XQA/FMHAv2) are built for sm_90/sm_100/sm_120, not {spec.arch_name}"
    if backend == "flashmla":
        return f"FlashMLA is built for sm_90/sm_100 MLA models, not {spec.arch_name}"
    return f"FlashInfer's trtllm-gen kernels are built for sm_100/sm_103 MLA models, not {spec.arch_name}"


@dataclass(frozen=True)
class Steer:
    """SGLang chose ``chosen``, which has no kernels here (``why``); the plugin picks ``to``."""

    chosen: str
    to: str
    why: str

    def text(self) -> str:
        return f"{self.chosen} -> {self.to}: {self.why}"


def steer_attention(spec: GpuSpec, backend: str | None, *, mla: bool) -> Steer | None:
    """The plugin's replacement for SGLang's own choice ``backend`` (None: keep SGLang's)."""
    if backend is None or not checks_backends(spec) or attention_runs(spec, backend, mla=mla) is not False:
        return None
    return Steer(backend, FALLBACK, why_no_kernels(spec, backend, mla=mla))
