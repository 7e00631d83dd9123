"""Fused MoE on a live GPU: both GEMMs of a layer through SGLang's own launcher, with a given config.

A :class:`MoeCase` names the layer (a :class:`~sglang_consumer_gpu.moe.shape.MoeShape`, the
batch size M and the activation dtype). :class:`MoeLayer` builds it on a device -- random
weights quantized as the dtype's SGLang quant method stores them, random activations,
routing, NaN-poisoned outputs -- and offers, per config:

- :meth:`MoeLayer.gemms`: the timed unit, ``fn(i)``: the up GEMM (``w13``, ``[E, 2N, K]``)
  and the down GEMM (``w2``, ``[E, K, N]``, router weights applied) on input set ``i``, each
  one call of SGLang's ``invoke_fused_moe_kernel``
  (``sglang.kernels.ops.moe.fused_moe_triton_kernels``, SGLang >= 0.5.16) as
  ``fused_experts`` makes it. Activations arrive quantized: the quantization, the
  activation between the GEMMs and the final sum do not depend on the config, so they stay
  out of the timed region (as in every earlier benchmark round);
- :meth:`MoeLayer.layer`: the layer as SGLang runs it: up GEMM, SGLang's ``silu_and_mul``,
  the down GEMM's activation quantization, down GEMM;
- :meth:`MoeLayer.check`: :meth:`layer` on poisoned outputs against a float32 torch
  reference of each GEMM from the same (dequantized) operands, with the bound of
  :func:`error_bound`.

Three things SGLang does on a GPU may not run where the engine runs (SGLang 0.5.17 on the
device machine needs ``tvm_ffi`` and nvcc for its JIT kernels; a CPU has neither JIT nor
sgl-kernel). For each the engine tries SGLang's own function first, checks its result, and
otherwise uses a torch implementation; :attr:`MoeLayer.paths` records which ran:

- ``align``: routing buffers from SGLang's ``moe_align_block_size`` (sgl-kernel), else the same
  layout filled by torch into buffers SGLang's own allocation code sized (:func:`align`);
- ``quant``: activation quantization by the function SGLang's launcher calls for this dtype
  (:data:`QUANTIZERS`), else torch with the same scale rule (:func:`torch_quantize`). The
  launcher's own quantizer call is then passed through for the already-quantized input, so
  the GEMM launch itself is SGLang's in both cases;
- ``activation``: SGLang's ``silu_and_mul``, else SGLang's own non-CUDA fallback expression.

On an sm_90 GPU SGLang switches on two paths no consumer GPU takes (swap-AB for fp8 at
BLOCK_SIZE_M < 64, programmatic dependent launch); ``hopper_paths=False`` (default) turns
them off for the engine's launches, so an H100/H200 runs what an RTX 4090 would.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sglang_consumer_gpu.measure.common import UNIT_ROUNDOFF, Check, judge, worst
from sglang_consumer_gpu.measure.timer import device_l2, rotation_slots
from sglang_consumer_gpu.moe.shape import MoeShape, dtype_label
from sglang_consumer_gpu.patches import moe_config

#: The keys of a fused-MoE config that reach the kernel launch.
CONFIG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")
#: Triton's launch defaults, for configs that leave warps/stages out (SGLang's defaults do).
LAUNCH_DEFAULTS = {"num_warps": 4, "num_stages": 3}

#: Largest finite e4m3 value, and SGLang's int8 range for activations.
FP8_MAX = 448.0
INT8_MAX = 127.0
#: Accumulation term of the error bound (see :func:`error_bound`).
ACCUMULATION_TERM = 2.0**-10

#: (dtype, quant) -> the launcher-module function SGLang's ``invoke_fused_moe_kernel`` calls to
#: quantize the activations, on CUDA and elsewhere (SGLang 0.5.16-0.5.23 spell them so).
QUANTIZERS: dict[tuple[str, str], tuple[str, str]] = {
    ("fp8_w8a8", "per-tensor"): ("scaled_fp8_quant", "scaled_fp8_quant"),
    ("fp8_w8a8", "per-channel"): ("scaled_fp8_quant", "scaled_fp8_quant"),
    ("fp8_w8a8", "block"): ("sglang_per_token_group_quant_fp8", "per_token_group_quant_fp8"),
    ("int8_w8a8", "per-channel"): ("per_token_quant_int8", "per_token_quant_int8"),
    ("int8_w8a8", "block"): ("sglang_per_token_group_quant_int8", "per_token_group_quant_int8"),
}
_PASSTHROUGH_NAMES = sorted({n for pair in QUANTIZERS.values() for n in pair})
_lock = threading.RLock()


def config_key(cfg: dict[str, Any]) -> str:
    """Stable short name of a config: ``BMxBNxBK-gG-wW-sS`` (Triton's launch defaults filled in)."""
    c = {**LAUNCH_DEFAULTS, "GROUP_SIZE_M": 1, **cfg}
    return "{BLOCK_SIZE_M}x{BLOCK_SIZE_N}x{BLOCK_SIZE_K}-g{GROUP_SIZE_M}-w{num_warps}-s{num_stages}".format(
        **c
    )


def parse_config_key(key: str) -> dict[str, int]:
    """Inverse of :func:`config_key`."""
    tile, g, w, s = key.split("-")
    bm, bn, bk = (int(x) for x in tile.split("x"))
    return dict(zip(CONFIG_KEYS, (bm, bn, bk, int(g[1:]), int(w[1:]), int(s[1:])), strict=True))


def launch_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a config file entry SGLang passes to the kernel (``USE_TMA`` etc. dropped)."""
    return {k: cfg[k] for k in CONFIG_KEYS if k in cfg}


def kernels() -> Any:
    """SGLang's fused-MoE launcher module."""
    return importlib.import_module(moe_config.LAUNCHER.module)


# ------------------------------------------------------------------------------ the case


@dataclass(frozen=True)
class MoeCase:
    """One fused-MoE layer at one batch size: the shape (SGLang's config-file convention:
    N is the per-GPU intermediate size, ``w13`` has 2N rows), M tokens, activation dtype."""

    shape: MoeShape
    M: int
    act_dtype: str = "bfloat16"  # activations and outputs: bfloat16 or float16

    def __post_init__(self) -> None:
        if self.M <= 0:
            raise ValueError(f"M must be positive, got {self.M}")
        if self.act_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"act_dtype must be bfloat16 or float16, got {self.act_dtype!r}")
        if self.shape.dtype not in (None, "fp8_w8a8", "int8_w8a8"):
            raise ValueError(
                f"the engine runs fused_moe_kernel dtypes (bf16/fp16, fp8_w8a8, int8_w8a8), not {self.shape.dtype}"
            )

    @property
    def quant(self) -> str:
        """``none``, ``per-tensor``, ``per-channel`` or ``block``. int8_w8a8 without blocks is
        per-channel (SGLang's w8a8_int8 method; the launcher asserts it)."""
        if self.shape.dtype is None:
            return "none"
        if self.shape.block_shape:
            return "block"
        if self.shape.per_channel_quant or self.shape.dtype == "int8_w8a8":
            return "per-channel"
        return "per-tensor"

    @property
    def label(self) -> str:
        s = self.shape
        q = "" if self.quant in ("none", "per-tensor") else f",{self.quant}"
        return f"E={s.E},N={s.N},K={s.K},topk={s.topk},{dtype_label(s.dtype)}{q},{self.act_dtype},M={self.M}"


def error_bound(case: MoeCase) -> float:
    """Bound on the max row relative L2 error of either GEMM output against the float32
    reference from the same dequantized operands.

    Each output element is one float32 accumulation (16-bit, fp8 and int8 products are exact
    in float32 and int8 sums exact in int32; scales are applied in float32) rounded once to
    the output dtype: at most its unit roundoff u relative (bf16 2^-8, fp16 2^-11), so at
    most u for a row's L2 norm. The rest is accumulation: float32 sums of K <= 16k
    random-sign terms in another order differ by ~sqrt(K) 2^-24 (~1e-5); fp8 tensor cores on
    sm_90 accumulate each MMA in reduced precision. ``ACCUMULATION_TERM`` = 2^-10 covers
    both with room (measured on the H100: 1.7e-3 for bf16, at most 2.5e-3 for fp8, against
    this bound's 4.9e-3)."""
    return UNIT_ROUNDOFF[case.act_dtype] + ACCUMULATION_TERM


# ------------------------------------------------------------------------------ quantization


def _qdtype(dtype: str) -> Any:
    import torch

    return torch.float8_e4m3fn if dtype == "fp8_w8a8" else torch.int8


def _group_scales(x: Any, groups: tuple[int, ...], qmax: float) -> Any:
    """amax/qmax over blocks of ``groups`` (one size per dim, 0 = whole dim), padded tails included."""
    import torch

    t = x.float()
    sizes = [g or d for g, d in zip(groups, t.shape, strict=True)]
    pads = []
    for g, d in reversed(list(zip(sizes, t.shape, strict=True))):
        pads += [0, (-d) % g]
    t = torch.nn.functional.pad(t.abs(), pads)
    shape: list[int] = []
    for g, d in zip(sizes, t.shape, strict=True):
        shape += [d // g, g]
    amax = t.reshape(shape).amax(dim=tuple(range(1, len(shape), 2)))
    return amax.clamp_min(1e-10) / qmax


def _expand(scale: Any, shape: tuple[int, ...], groups: tuple[int, ...]) -> Any:
    """Scale per block -> scale per element of ``shape``."""
    s = scale
    for dim, (g, d) in enumerate(zip(groups, shape, strict=True)):
        s = s.repeat_interleave(g or d, dim=dim).narrow(dim, 0, d)
    return s


def _cast(x: Any, scale_full: Any, dtype: str) -> Any:
    import torch

    y = x.float() / scale_full
    if dtype == "fp8_w8a8":
        return y.clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return y.round().clamp(-INT8_MAX - 1, INT8_MAX).to(torch.int8)


def _act_groups(case: MoeCase, cols: int) -> tuple[int, int]:
    """Scale granularity of activations [rows, cols]: per tensor, per row, or 1 x block_k."""
    if case.quant == "per-tensor":
        return (0, 0)
    if case.quant == "per-channel":
        return (1, 0)
    return (1, case.shape.block_shape[1])


def torch_quantize(x: Any, case: MoeCase) -> tuple[Any, Any]:
    """Activations [rows, cols] -> (quantized, scale) in the layout SGLang's launcher expects
    for ``case`` (scale [1], [rows, 1] or [rows, ceil(cols / block_k)]), with SGLang's rule
    scale = amax / qmax over the group (fp8 e4m3: 448, int8: 127, int8 rounded to nearest)."""
    groups = _act_groups(case, x.shape[-1])
    qmax = FP8_MAX if case.shape.dtype == "fp8_w8a8" else INT8_MAX
    scale = _group_scales(x, groups, qmax)
    q = _cast(x, _expand(scale, tuple(x.shape), groups), case.shape.dtype)
    return q, (scale.reshape(1) if case.quant == "per-tensor" else scale)


def dequantize(q: Any, scale: Any, case: MoeCase) -> Any:
    """float32 values of quantized activations (the reference's input)."""
    if case.quant == "none":
        return q.float()
    groups = _act_groups(case, q.shape[-1])
    s = scale.float().reshape(1, 1) if case.quant == "per-tensor" else scale.float()
    return q.float() * _expand(s, tuple(q.shape), groups)


def quantization_ok(x: Any, q: Any, scale: Any, case: MoeCase) -> bool:
    """Does (q, scale) represent ``x`` to within one step of the quantized type (fp8 e4m3: 2^-3
    relative plus its subnormal spacing 2^-9 times the scale; int8: one scale step)? One
    step, not half: some of SGLang's quantizers truncate (``per_token_group_quant_int8``'s
    float-to-int8 cast), and this check is there to catch a wrong layout or wrong scales."""
    import torch

    if not (isinstance(q, torch.Tensor) and q.shape == x.shape and q.dtype == _qdtype(case.shape.dtype)):
        return False
    groups = _act_groups(case, x.shape[-1])
    s = scale.float().reshape(1, 1) if case.quant == "per-tensor" else scale.float()
    try:
        s_full = _expand(s, tuple(x.shape), groups)
    except RuntimeError:  # a scale layout this engine does not know
        return False
    err = (q.float() * s_full - x.float()).abs()
    if case.shape.dtype == "fp8_w8a8":
        allowed = x.float().abs() * 2.0**-3 + s_full * 2.0**-9
    else:
        allowed = s_full
    return bool((err <= allowed * 1.001 + 1e-12).all())


def sglang_quantizer_name(case: MoeCase) -> str:
    """Name of the launcher-module function SGLang calls to quantize ``case``'s activations."""
    cuda_name, other_name = QUANTIZERS[(case.shape.dtype, case.quant)]
    return cuda_name if getattr(kernels(), "_is_cuda", False) else other_name


def sglang_quantizer(case: MoeCase) -> Callable[[Any], tuple[Any, Any]]:
    """The function SGLang's launcher would call to quantize activations for ``case``."""
    fn = getattr(kernels(), sglang_quantizer_name(case))
    if case.quant in ("per-tensor", "per-channel") and case.shape.dtype == "fp8_w8a8":
        per_token = case.quant == "per-channel"
        return lambda x: fn(x, None, use_per_token_if_dynamic=per_token)
    if case.quant == "block":
        return lambda x: fn(x, case.shape.block_shape[1])
    return fn


def resolve_quantizer(case: MoeCase, probe: Any) -> tuple[Callable[[Any], tuple[Any, Any]], str]:
    """(quantize, path): SGLang's quantizer if it runs on ``probe`` and its result checks out,
    else :func:`torch_quantize`; ``path`` says which and, for torch, why."""
    name = sglang_quantizer_name(case)
    try:
        fn = sglang_quantizer(case)
        q, s = fn(probe)
        if quantization_ok(probe, q, s, case):
            return fn, f"sglang {name}"
        why = "its result failed the quantization check"
    except Exception as exc:
        why = _why(exc)
    return (lambda x: torch_quantize(x, case)), f"torch (SGLang's {name}: {why})"


def _why(exc: BaseException) -> str:
    """One line naming an exception, for ``paths`` records."""
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def launcher_as_configured(fk: Any, pending: list[Any], hopper_paths: bool) -> Iterator[None]:
    """Inside the block, SGLang's launcher takes already-quantized activations as they are
    (its quantizer call returns them with ``pending[0]`` as the scale), and unless
    ``hopper_paths`` its swap-AB and PDL switches answer False (as on every consumer GPU)."""
    import torch

    quantized = (torch.float8_e4m3fn, torch.int8)
    saved: dict[str, Any] = {}

    def passthrough(original: Callable[..., Any]) -> Callable[..., Any]:
        def quantize(A: Any, *args: Any, **kwargs: Any) -> Any:
            if A.dtype in quantized:
                return A, pending[0]
            return original(A, *args, **kwargs)

        return quantize

    with _lock:
        for name in _PASSTHROUGH_NAMES:
            if hasattr(fk, name):
                saved[name] = getattr(fk, name)
                setattr(fk, name, passthrough(saved[name]))
        if not hopper_paths:
            for name in ("should_enable_swap_ab", "is_arch_support_pdl"):
                if hasattr(fk, name):
                    saved[name] = getattr(fk, name)
                    setattr(fk, name, lambda *a, **k: False)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(fk, name, value)


# ------------------------------------------------------------------------------ routing


@dataclass
class Alignment:
    """SGLang's routing buffers for one BLOCK_SIZE_M (``moe_align_block_size``'s outputs)."""

    sorted_ids: Any
    expert_ids: Any
    num_post: Any
    path: str


def torch_align(topk_ids: Any, block_m: int, num_experts: int) -> tuple[Any, Any, Any]:
    """SGLang's routing layout, filled by torch into buffers SGLang's allocation code sized:
    per expert its (token * topk + k) slots in ascending order, padded with ``numel`` to a
    multiple of ``block_m``; ``expert_ids`` per block (-1 past the end); the padded total."""
    import torch

    from sglang_consumer_gpu.oracle.kernels.moe import align_without_fill

    with _lock, align_without_fill() as alloc:  # SGLang's allocation code, its fill kernels no-ops
        sorted_ids, expert_ids, num_post = alloc(topk_ids, block_m, num_experts)
    flat = topk_ids.flatten().long()
    numel = flat.numel()
    dev = flat.device
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_m - 1) // block_m * block_m
    starts = torch.cumsum(padded, 0) - padded
    order = torch.argsort(flat, stable=True)
    experts = flat[order]
    rank = torch.arange(numel, device=dev) - (torch.cumsum(counts, 0) - counts)[experts]
    sorted_ids.fill_(numel)
    sorted_ids[starts[experts] + rank] = order.to(torch.int32)
    expert_ids.fill_(-1)
    blocks = torch.repeat_interleave(torch.arange(num_experts, device=dev), padded // block_m)
    expert_ids[: blocks.numel()] = blocks.to(torch.int32)
    num_post.fill_(int(padded.sum()))
    return sorted_ids, expert_ids, num_post


def alignment_ok(topk_ids: Any, block_m: int, bufs: tuple[Any, Any, Any]) -> bool:
    """Is ``bufs`` a valid routing for ``topk_ids``: every slot exactly once, in a block of its
    own expert, with the padded total SGLang's layout gives?"""
    import torch

    sorted_ids, expert_ids, num_post = bufs
    flat = topk_ids.flatten().long()
    numel = flat.numel()
    counts = torch.bincount(flat, minlength=int(flat.max()) + 1 if numel else 1)
    total = int(((counts + block_m - 1) // block_m * block_m).sum())
    if int(num_post.flatten()[0]) != total or sorted_ids.numel() < total:
        return False
    ids = sorted_ids[:total].long()
    real = ids < numel
    if int(real.sum()) != numel or not bool((ids[~real] == numel).all()):
        return False
    if not bool((torch.bincount(ids[real], minlength=numel) == 1).all()):
        return False
    block_expert = expert_ids[: total // block_m].long().repeat_interleave(block_m)
    return bool((flat[ids[real]] == block_expert[real]).all())


def align(topk_ids: Any, block_m: int, num_experts: int) -> Alignment:
    """Routing buffers: SGLang's ``moe_align_block_size`` when it runs and its result checks
    out (sgl-kernel on a GPU), else :func:`torch_align`; ``path`` says which."""
    try:
        mod = importlib.import_module(moe_config.ALIGN.module)
        bufs = mod.moe_align_block_size(topk_ids, block_m, num_experts)
        if alignment_ok(topk_ids, block_m, bufs):
            return Alignment(*bufs, path="sglang moe_align_block_size")
        why = "its result failed the layout check"
    except Exception as exc:
        why = _why(exc)
    return Alignment(*torch_align(topk_ids, block_m, num_experts), path=f"torch (SGLang's: {why})")


# ------------------------------------------------------------------------------ the layer


def silu_and_mul(x: Any) -> tuple[Any, str]:
    """SGLang's gated activation for the fused-MoE layer: its CUDA kernel when it runs, else
    its own non-CUDA fallback (``F.silu(x[..., :d]) * x[..., d:]``)."""
    import torch

    d = x.shape[-1] // 2
    try:
        fn = getattr(importlib.import_module(moe_config.ACTIVATION.module), moe_config.ACTIVATION.attr)
        out = torch.empty(x.shape[0], d, device=x.device, dtype=x.dtype)
        fn(x, out)
        return out, "sglang silu_and_mul"
    except Exception as exc:
        why = _why(exc)
    return torch.nn.functional.silu(x[..., :d]) * x[..., d:], f"torch (SGLang's non-CUDA fallback; {why})"


def quantize_weight(w: Any, case: MoeCase) -> tuple[Any, Any]:
    """Weights [E, n_out, k_in] -> (quantized, scale) as SGLang's quant methods store them:
    fp8 per-tensor [E]; per-channel [E, n_out, 1]; block [E, ceil(n/bn), ceil(k/bk)]."""
    dtype, quant = case.shape.dtype, case.quant
    qmax = FP8_MAX if dtype == "fp8_w8a8" else INT8_MAX
    groups = {
        "per-tensor": (1, 0, 0),
        "per-channel": (1, 1, 0),
        "block": (1, *case.shape.block_shape) if case.shape.block_shape else (1, 0, 0),
    }[quant]
    scale = _group_scales(w, groups, qmax)
    q = _cast(w, _expand(scale, tuple(w.shape), groups), dtype)
    if quant == "per-tensor":
        return q, scale.reshape(-1)
    return q, scale


def dequantize_weight(q: Any, scale: Any, case: MoeCase) -> Any:
    """:func:`quantize_weight`'s inverse in float32: the weights the float32 references multiply."""
    if scale is None:
        return q.float()
    if case.quant == "per-tensor":
        return q.float() * scale.float().reshape(-1, 1, 1)
    if case.quant == "per-channel":
        return q.float() * scale.float()
    bn, bk = case.shape.block_shape
    return q.float() * _expand(scale.float(), tuple(q.shape), (1, bn, bk))


@dataclass
class _Slot:
    """One input set: routing, activations (quantized), outputs, alignments per BLOCK_SIZE_M."""

    topk_ids: Any
    topk_weights: Any
    x: Any
    x_scale: Any
    inter: Any
    inter_scale: Any
    c1: Any
    c2: Any
    weights: int  # which weight copy
    aligned: dict[int, Alignment] = field(default_factory=dict)


class MoeLayer:
    """A :class:`MoeCase` built on ``device`` (see the module docstring).

    ``slots``: input sets to rotate through (default: enough to read more than twice the L2
    per rotation, :func:`~sglang_consumer_gpu.measure.timer.rotation_slots`); weight copies
    are made only where all weights together are smaller than that. ``experts``: build
    weights for this many experts and route every token to expert 0, with routing buffers
    sized for the case's E -- the same kernel specialization at a fraction of the memory,
    for compile-only warm-ups (:class:`MoeJob`)."""

    def __init__(
        self,
        case: MoeCase,
        *,
        device: str = "cuda",
        seed: int = 0,
        slots: int | None = None,
        experts: int | None = None,
        hopper_paths: bool = False,
        l2: int | None = None,
    ) -> None:
        import torch
        import triton.language as tl

        self.case, self.device, self.hopper_paths = case, device, hopper_paths
        self.torch = torch
        self.fk = kernels()
        s = case.shape
        self.E = s.E
        self.act = getattr(torch, case.act_dtype)
        self.compute_type = tl.bfloat16 if case.act_dtype == "bfloat16" else tl.float16
        self._gen = torch.Generator(device=device).manual_seed(seed)
        self._pending: list[Any] = [None]
        n_exp = experts or s.E
        expert_bytes = 3 * s.N * s.K * (1 if s.dtype else 2)
        if slots is None:
            l2 = device_l2(device, l2)
            touched = min(s.E, case.M * s.topk) * expert_bytes + case.M * s.K * 2 * (1 + s.topk)
            slots = rotation_slots(touched, l2)
            copies = rotation_slots(n_exp * expert_bytes, l2, limit=slots)
        else:
            copies = 1
        self.paths: dict[str, str] = {}
        w1 = [self._weights(n_exp, 2 * s.N, s.K) for _ in range(copies)]
        w2 = [self._weights(n_exp, s.K, s.N) for _ in range(copies)]
        self.w1, self.w1_scale = [w for w, _ in w1], [sc for _, sc in w1]
        self.w2, self.w2_scale = [w for w, _ in w2], [sc for _, sc in w2]
        if s.dtype is not None:
            probe = self._randn(max(case.M, 4), s.K)
            self._quantize, self.paths["quant"] = resolve_quantizer(case, probe)
        else:
            self.paths["quant"] = "none (16-bit activations)"
        self.slots = [self._slot(i % copies, single_expert=experts is not None) for i in range(slots)]

    # -- building
    def _randn(self, *shape: int) -> Any:
        t = self.torch
        return t.randn(*shape, device=self.device, dtype=t.float32, generator=self._gen).to(self.act)

    def _weights(self, n_exp: int, n_out: int, k_in: int) -> tuple[Any, Any]:
        w = self._randn(n_exp, n_out, k_in) / math.sqrt(k_in)
        if self.case.shape.dtype is None:
            return w, None
        return quantize_weight(w, self.case)

    def _act_in(self, a: Any) -> tuple[Any, Any]:
        if self.case.shape.dtype is None:
            return a, None
        return self._quantize(a)

    def _slot(self, weights: int, single_expert: bool) -> _Slot:
        t, case, s = self.torch, self.case, self.case.shape
        logits = t.randn(case.M, s.E, device=self.device, generator=self._gen)
        topk_w, topk_ids = t.topk(t.softmax(logits, dim=-1), s.topk, dim=-1)
        if single_expert:
            topk_ids = t.zeros_like(topk_ids)
        x, x_scale = self._act_in(self._randn(case.M, s.K))
        inter, inter_scale = self._act_in(self._randn(case.M * s.topk, s.N))
        nan = float("nan")
        c1 = t.full((case.M * s.topk, 2 * s.N), nan, device=self.device, dtype=self.act)
        c2 = t.full((case.M, s.topk, s.K), nan, device=self.device, dtype=self.act)
        return _Slot(topk_ids.to(t.int32), topk_w.float().contiguous(), x, x_scale, inter, inter_scale,
                     c1, c2, weights)  # fmt: skip

    def alignment(self, slot: int, block_m: int) -> Alignment:
        sl = self.slots[slot]
        if block_m not in sl.aligned:
            sl.aligned[block_m] = align(sl.topk_ids, block_m, self.E)
            self.paths["align"] = sl.aligned[block_m].path
        return sl.aligned[block_m]

    # -- launching
    def _gemm(
        self, A: Any, A_scale: Any, up: bool, sl: _Slot, out: Any, cfg: dict[str, Any], al: Alignment
    ) -> None:
        s = self.case.shape
        B = (self.w1 if up else self.w2)[sl.weights]
        B_scale = (self.w1_scale if up else self.w2_scale)[sl.weights]
        self._pending[0] = A_scale
        with launcher_as_configured(self.fk, self._pending, self.hopper_paths):
            self.fk.invoke_fused_moe_kernel(
                A, B, None, out, A_scale, B_scale, None, sl.topk_weights, sl.topk_ids,
                al.sorted_ids, al.expert_ids, al.num_post, not up, s.topk if up else 1, cfg,
                compute_type=self.compute_type,
                use_fp8_w8a8=s.dtype == "fp8_w8a8", use_int8_w8a8=s.dtype == "int8_w8a8",
                use_int8_w8a16=False, use_int4_w4a16=False,
                per_channel_quant=self.case.quant == "per-channel",
                block_shape=list(s.block_shape) if s.block_shape else None,
            )  # fmt: skip

    def _configs(self, config: dict[str, Any], down_config: dict[str, Any] | None) -> tuple[dict, dict]:
        up = launch_config(config)
        down = launch_config(down_config) if down_config else up
        if down["BLOCK_SIZE_M"] != up["BLOCK_SIZE_M"]:
            raise ValueError("SGLang aligns the routing once: the down config must keep BLOCK_SIZE_M")
        return up, down

    def gemms(
        self, config: dict[str, Any], down_config: dict[str, Any] | None = None
    ) -> Callable[[int], None]:
        """``fn(i)``: both GEMMs of the layer on input set ``i % slots`` (the timed unit).
        ``down_config``: a separate config for the down GEMM (SGLang's ``_down`` files)."""
        up, down = self._configs(config, down_config)
        for i in range(len(self.slots)):
            self.alignment(i, up["BLOCK_SIZE_M"])

        def fn(i: int) -> None:
            sl = self.slots[i % len(self.slots)]
            al = sl.aligned[up["BLOCK_SIZE_M"]]
            self._gemm(sl.x, sl.x_scale, True, sl, sl.c1, up, al)
            self._gemm(sl.inter, sl.inter_scale, False, sl, sl.c2, down, al)

        return fn

    def up_gemm(self, config: dict[str, Any]) -> Callable[[int], Any]:
        """``fn(i)``: the up GEMM alone on input set ``i % slots``; returns its output (``c1``).
        The unit of one kernel launch, for what watches single launches (the safety net)."""
        cfg = launch_config(config)
        for i in range(len(self.slots)):
            self.alignment(i, cfg["BLOCK_SIZE_M"])

        def fn(i: int) -> Any:
            sl = self.slots[i % len(self.slots)]
            self._gemm(sl.x, sl.x_scale, True, sl, sl.c1, cfg, sl.aligned[cfg["BLOCK_SIZE_M"]])
            return sl.c1

        return fn

    def layer(
        self, config: dict[str, Any], down_config: dict[str, Any] | None = None
    ) -> Callable[[int], Any]:
        """``fn(i)``: the layer as SGLang runs it on input set ``i``: up GEMM, activation,
        quantization of the down GEMM's input, down GEMM. Returns that input and its scale."""
        up, down = self._configs(config, down_config)

        def fn(i: int) -> tuple[Any, Any]:
            sl = self.slots[i % len(self.slots)]
            al = self.alignment(i % len(self.slots), up["BLOCK_SIZE_M"])
            self._gemm(sl.x, sl.x_scale, True, sl, sl.c1, up, al)
            act, self.paths["activation"] = silu_and_mul(sl.c1)
            a2, a2_scale = self._act_in(act)
            self._gemm(a2, a2_scale, False, sl, sl.c2, down, al)
            return a2, a2_scale

        return fn

    # -- checking
    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def reference(self, slot: int, a2: Any, a2_scale: Any) -> tuple[Any, Any]:
        """float32 outputs of both GEMMs of input set ``slot`` from the dequantized operands
        (``a2``: the down GEMM's actual input)."""
        t, case, s = self.torch, self.case, self.case.shape
        sl = self.slots[slot]
        inter = dequantize(a2, a2_scale, case)
        ids = sl.topk_ids.long()
        ref2 = t.empty(case.M, s.topk, s.K, device=self.device)
        for e in ids.unique().tolist():
            m, j = (ids == e).nonzero(as_tuple=True)
            w2 = _expert(self.w2[sl.weights], self.w2_scale[sl.weights], e, case)
            ref2[m, j] = (inter[m * s.topk + j] @ w2.T) * sl.topk_weights[m, j, None]
        return self.up_reference(slot), ref2

    def up_reference(self, slot: int = 0) -> Any:
        """float32 output of the up GEMM of input set ``slot`` from the dequantized operands,
        rows as in ``c1`` (token * topk + k)."""
        t, case, s = self.torch, self.case, self.case.shape
        sl = self.slots[slot]
        x = dequantize(sl.x, sl.x_scale, case)
        ids = sl.topk_ids.long()
        ref1 = t.empty(case.M, s.topk, 2 * s.N, device=self.device)
        for e in ids.unique().tolist():
            m, j = (ids == e).nonzero(as_tuple=True)
            ref1[m, j] = x[m] @ _expert(self.w1[sl.weights], self.w1_scale[sl.weights], e, case).T
        return ref1.reshape(case.M * s.topk, 2 * s.N)

    def check(
        self, config: dict[str, Any], down_config: dict[str, Any] | None = None, slot: int = 0
    ) -> Check:
        """The layer (:meth:`layer`) on NaN-poisoned outputs against :meth:`reference`; the
        worse of the two GEMMs, both in ``detail``."""
        t = self.torch
        sl = self.slots[slot]
        sl.c1.fill_(float("nan"))
        sl.c2.fill_(float("nan"))
        a2, a2_scale = self.layer(config, down_config)(slot)
        self._sync()
        prev = t.backends.cuda.matmul.allow_tf32
        t.backends.cuda.matmul.allow_tf32 = False
        try:
            ref1, ref2 = self.reference(slot, a2, a2_scale)
        finally:
            t.backends.cuda.matmul.allow_tf32 = prev
        bound = error_bound(self.case)
        up = judge(sl.c1, ref1, bound, gemm="up")
        down = judge(sl.c2, ref2, bound, gemm="down")
        w = worst([up, down])
        return Check(ok=up.ok and down.ok, error=w.error, bound=bound, metric=w.metric,
                     unwritten=up.unwritten + down.unwritten,
                     detail={"up": up.error, "down": down.error, **self.paths})  # fmt: skip


def _expert(w: Any, scale: Any, e: int, case: MoeCase) -> Any:
    """float32 weights of expert ``e``."""
    return dequantize_weight(w[e : e + 1], None if scale is None else scale[e : e + 1], case)[0]


# ------------------------------------------------------------------------------ compile jobs


@dataclass(frozen=True)
class MoeJob:
    """Compile both GEMMs of ``case`` for ``config`` (a :class:`~sglang_consumer_gpu.measure.compile.Job`)."""

    case: MoeCase
    config: tuple[tuple[str, int], ...]  # launch_config(...) items, hashable
    down_config: tuple[tuple[str, int], ...] | None = None

    @classmethod
    def of(cls, case: MoeCase, config: dict[str, Any], down_config: dict[str, Any] | None = None) -> MoeJob:
        down = tuple(sorted(launch_config(down_config).items())) if down_config else None
        return cls(case, tuple(sorted(launch_config(config).items())), down)

    @property
    def key(self) -> str:
        down = f"|down {config_key(dict(self.down_config))}" if self.down_config else ""
        return f"{self.case.label}|{config_key(dict(self.config))}{down}"

    @property
    def group(self) -> str:
        c = self.case
        return f"{dtype_label(c.shape.dtype)},{c.quant},{c.act_dtype}|{config_key(dict(self.config))}"

    @property
    def cost(self) -> float:
        cfg = dict(self.config)
        return float(cfg["BLOCK_SIZE_M"] * cfg["BLOCK_SIZE_N"] * cfg["BLOCK_SIZE_K"])

    def warm(self) -> None:
        layer = MoeLayer(self.case, slots=1, experts=1)
        layer.gemms(dict(self.config), dict(self.down_config) if self.down_config else None)(0)
        layer.torch.cuda.synchronize()
