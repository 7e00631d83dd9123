"""Oracle specs for SGLang's Triton attention kernels: dry-run SGLang's own launchers.

Each :class:`AttentionCase` names one launch SGLang makes on CUDA (extend,
unified extend for deterministic inference, dense one-shot prefill, context
prefill for vision encoders, decode stage 1 for MHA and grouped/MLA, decode
stage 2). :func:`dry_run` calls SGLang's launcher itself with ``meta`` tensors
(contiguous, last-dim stride 1, the real dtypes, fp8 KV where SGLang takes
it) inside :func:`~sglang_consumer_gpu.oracle.virtual.virtual_gpu` (so
SGLang's capability branches answer for the spec)
and :func:`~sglang_consumer_gpu.oracle.capture.capture_launches` (each
``kernel[grid](...)`` compiles for the spec's arch as a warmup run, nothing is
launched, and the compiled kernel's ``metadata.shared`` is read; results are
cached on disk). None of these launchers reads tensor values on
the host, so all are dry-run, none re-derived.

:func:`cases` lists the launches ``sglang-consumer-gpu check`` (and ``--full``)
compiles for a GPU (see :mod:`sglang_consumer_gpu.families.attention`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from sglang_consumer_gpu.attention import HEAD_DIMS, PREFILL_HEAD_DIMS
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.capture import KernelLaunch, capture_launches
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.patches import attention_extend, attention_prefill

#: Launchers a case can name, and the SGLang function each one dry-runs.
LAUNCHERS = {
    "extend": attention_extend.EXTEND,
    "extend_unified": attention_extend.EXTEND_UNIFIED,
    "dense_prefill": attention_extend.DENSE_PREFILL,
    "prefill": attention_prefill.SEAMS[-1],
    "decode": attention_extend.DECODE,
}
#: Extend-kernel variants (constexpr flags that change the compiled kernel).
EXTEND_VARIANTS = ("causal", "sliding_window", "logit_cap", "custom_mask", "sinks")


@dataclass(frozen=True)
class AttentionCase:
    """One attention launch as SGLang would make it."""

    launcher: str  # key of LAUNCHERS
    lq: int
    lv: int
    dtype: str = "bfloat16"  # q/k/v (and output) dtype
    kv_dtype: str = ""  # KV-cache dtype; "" = same as dtype
    variant: str = "causal"  # one of EXTEND_VARIANTS, or "noncausal" for prefill
    q_heads: int = 16
    kv_heads: int = 4  # decode: kv_heads == q_heads gives the MHA (non-grouped) kernel
    tokens: int = 256

    @property
    def label(self) -> str:
        kv = f" kv={self.kv_dtype}" if self.kv_dtype and self.kv_dtype != self.dtype else ""
        heads = f" {self.q_heads}/{self.kv_heads}h" if self.launcher == "decode" else ""
        return f"{self.launcher} Lq={self.lq} Lv={self.lv} {self.dtype}{kv} {self.variant}{heads}"


def _dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _extend_args(case: AttentionCase) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments as TritonAttnBackend.forward_extend passes them (meta tensors)."""
    import torch

    m, dt = "meta", _dtype(case.dtype)
    kvdt = _dtype(case.kv_dtype or case.dtype)
    t, hq, hk, batch, slots = case.tokens, case.q_heads, case.kv_heads, 2, 8192
    q = torch.empty(t, hq, case.lq, device=m, dtype=dt)
    k = torch.empty(t, hk, case.lq, device=m, dtype=dt)
    v = torch.empty(t, hk, case.lv, device=m, dtype=dt)
    o = torch.empty(t, hq, case.lv, device=m, dtype=dt)
    kb = torch.empty(slots, hk, case.lq, device=m, dtype=kvdt)
    vb = torch.empty(slots, hk, case.lv, device=m, dtype=kvdt)
    i32 = {"device": m, "dtype": torch.int32}
    qo_indptr, kv_indptr = torch.empty(batch + 1, **i32), torch.empty(batch + 1, **i32)
    kv_indices = torch.empty(4096, device=m, dtype=torch.int64)
    custom = case.variant == "custom_mask"
    mask = torch.empty(1 << 16, device=m, dtype=torch.uint8) if custom else None
    mask_indptr = torch.empty(batch + 1, device=m, dtype=torch.int64) if custom else None
    kw: dict[str, Any] = {
        "logit_cap": 30.0 if case.variant == "logit_cap" else 0.0,
        "sliding_window_size": 512 if case.variant == "sliding_window" else -1,
        "sinks": torch.empty(hq, device=m, dtype=torch.float32) if case.variant == "sinks" else None,
    }
    if case.launcher == "extend":
        args = (
            q,
            k,
            v,
            o,
            kb,
            vb,
            qo_indptr,
            kv_indptr,
            kv_indices,
            mask,
            not custom,
            mask_indptr,
            t,
            1.0,
            1.0,
        )
        if case.variant == "sliding_window":
            kw["window_kv_offsets"] = torch.empty(batch, **i32)
        return args, kw
    if case.launcher == "extend_unified":
        prefix = torch.empty(batch, **i32)
        args = (q, o, kb, vb, 1.0, 1.0, qo_indptr, kv_indptr, kv_indices, prefix, t)
        kw.update(custom_mask=mask, mask_indptr=mask_indptr, is_causal=not custom)
        if case.variant == "sliding_window":
            kw["window_start_pos"] = torch.empty(batch, **i32)
        return args, kw
    # dense one-shot prefill: no sinks/sliding window/custom mask (the backend refuses them)
    args = (q, k, v, o, qo_indptr, kv_indptr, t)
    return args, {"logit_cap": kw["logit_cap"], "is_causal": True}


def _prefill_args(case: AttentionCase) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments as VisionTritonAttention passes them."""
    import torch

    m, dt = "meta", _dtype(case.dtype)
    q = torch.empty(case.tokens, case.q_heads, case.lq, device=m, dtype=dt)
    loc = torch.empty(4, device=m, dtype=torch.int32)
    return (q, q, q, q, loc, loc, case.tokens), {"is_causal": case.variant != "noncausal"}


def _decode_args(case: AttentionCase) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments as TritonAttnBackend.forward_decode passes them."""
    import torch

    m, dt = "meta", _dtype(case.dtype)
    kvdt = _dtype(case.kv_dtype or case.dtype)
    batch, splits, hq, hk = 8, 16, case.q_heads, case.kv_heads
    mla = case.lq == 576
    q = torch.empty(batch, hq, case.lq, device=m, dtype=dt)
    kb = torch.empty(8192, hk, case.lq, device=m, dtype=kvdt)
    vb = torch.empty(8192, hk, case.lv, device=m, dtype=kvdt)
    o = torch.empty(batch, hq, case.lv, device=m, dtype=dt)
    kv_indptr = torch.empty(batch + 1, device=m, dtype=torch.int32)
    kv_indices = torch.empty(4096, device=m, dtype=torch.int64)
    logits = torch.empty(batch, hq, splits, case.lv, device=m, dtype=torch.float32)
    lse = torch.empty(batch, hq, splits, device=m, dtype=torch.float32)
    num_splits = torch.empty(batch, device=m, dtype=torch.int32)
    args = (q, kb, vb, o, kv_indptr, kv_indices, logits, lse, num_splits, splits, 0.1, 1.0, 1.0)
    kw: dict[str, Any] = {"has_mla": mla, "logit_cap": 30.0 if case.variant == "logit_cap" else 0.0}
    if case.variant == "sinks":
        kw["sinks"] = torch.empty(hq, device=m, dtype=torch.float32)
    return args, kw


def dry_run(spec: GpuSpec, case: AttentionCase) -> list[KernelLaunch]:
    """Run SGLang's launcher for ``case`` on a virtual ``spec``; return its launches.

    Whether the plugin's patches act is the caller's (``families.on_gpu(spec, patched=...)``;
    inside it the virtual GPU is already set up and this one changes nothing).
    """
    import importlib

    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    seam = LAUNCHERS[case.launcher]
    module = importlib.import_module(seam.module)
    build = {"prefill": _prefill_args, "decode": _decode_args}.get(case.launcher, _extend_args)
    args, kwargs = build(case)
    with virtual_gpu(spec), capture_launches(spec) as launches:
        getattr(module, seam.attr)(*args, **kwargs)
    return launches


def cases(*, full: bool) -> list[AttentionCase]:
    """The launches checked per GPU: a CI-sized subset, or everything (``full``).

    Subset: every head-dim pair for extend (bf16, causal), dense prefill and
    unified extend at 128 and 576, vision prefill at 80/128/256 in bf16 and
    128 in fp32, decode MHA/GQA/MLA in bf16. Full: the head-dim list x {bf16,
    fp16} x {bf16/fp16, fp8 e4m3 KV} x every variant, every launcher.
    """
    out: list[AttentionCase] = []
    if not full:
        out += [AttentionCase("extend", lq, lv) for lq, lv in HEAD_DIMS]
        out += [
            AttentionCase(launcher, lq, lv)
            for launcher in ("extend_unified", "dense_prefill")
            for lq, lv in ((128, 128), (576, 512))
        ]
        out += [AttentionCase("prefill", d, d, variant="noncausal") for d in (80, 128, 256)]
        out += [AttentionCase("prefill", 128, 128, dtype="float32", variant="noncausal")]
        out += [
            AttentionCase("decode", 128, 128, q_heads=32, kv_heads=32),
            AttentionCase("decode", 128, 128, q_heads=32, kv_heads=8),
            AttentionCase("decode", 576, 512, q_heads=16, kv_heads=1),
        ]
        return out
    for launcher, (lq, lv), dtype, kv8 in itertools.product(
        ("extend", "extend_unified", "dense_prefill"), HEAD_DIMS, ("bfloat16", "float16"), (False, True)
    ):
        if kv8 and launcher == "dense_prefill":
            continue  # dense prefill reads the fresh k/v, not the cache
        variants = EXTEND_VARIANTS if (dtype == "bfloat16" and not kv8) else ("causal",)
        if launcher == "dense_prefill":
            variants = ("causal", "logit_cap") if dtype == "bfloat16" else ("causal",)
        for variant in variants:
            out.append(AttentionCase(launcher, lq, lv, dtype, "float8_e4m3fn" if kv8 else "", variant))
    for d, dtype, variant in itertools.product(
        PREFILL_HEAD_DIMS, ("bfloat16", "float16", "float32"), ("noncausal", "causal")
    ):
        out.append(AttentionCase("prefill", d, d, dtype, variant=variant))
    for (lq, lv), kv8, (hq, hk), variant in itertools.product(
        HEAD_DIMS, (False, True), ((32, 32), (32, 8), (16, 1)), ("causal", "logit_cap", "sinks")
    ):
        if lq == 576 and hk != 1:
            continue  # MLA has one latent KV head
        out.append(
            AttentionCase("decode", lq, lv, "bfloat16", "float8_e4m3fn" if kv8 else "", variant, hq, hk)
        )
    return out


def for_spec(case: AttentionCase, spec: GpuSpec) -> AttentionCase:
    """``case`` as it can run on ``spec``: without e4m3 fp8
    (:attr:`~sglang_consumer_gpu.hardware.spec.GpuSpec.supports_fp8_e4m3`)
    SGLang's extend kernel cannot compile with an e4m3 KV cache and an Ampere
    user runs ``--kv-cache-dtype fp8_e5m2``; the fp8-KV cases use e5m2 there."""
    if case.kv_dtype == "float8_e4m3fn" and not spec.supports_fp8_e4m3:
        return replace(case, kv_dtype="float8_e5m2")
    return case


def launch_resources(spec: GpuSpec, case: AttentionCase) -> list[Resources]:
    """Shared memory of every kernel ``case`` launches on ``spec`` (raises if it does not compile)."""
    case = for_spec(case, spec)
    return [launch.resources for launch in dry_run(spec, case) if launch.resources]
