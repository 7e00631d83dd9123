"""A weight-only FP8 MoE layer end to end: random inputs, the run through the kernel, the float32 reference.

What the kernel is checked against, on the CPU (Triton's interpreter, the tests) and on a GPU
(``selftest``, the device script):

* :func:`make_layer`: random weights quantized to e4m3 as SGLang's fp8 MoE methods store them
  (:func:`quantize`: block ``[E, ceil(n/bn), ceil(k/bk)]``, per-channel ``[E, n, 1]``,
  per-tensor ``[E]``; ``scale = amax / 448``, or the power of two at or above it), a share of
  the codes replaced by subnormal ones (the decoder's special case), 16-bit activations, and a
  softmax top-k routing over the first ``E - idle`` experts (the last ``idle`` get no token);
* :func:`run_layer`: the layer as SGLang's ``fused_experts`` runs it, both GEMMs through a
  ``gemm`` (the plugin's launcher, or SGLang's patched one), SiLU-and-mul in float32 stored in
  the activation dtype between them, the top-k outputs summed in float32;
* :func:`reference_gemms`: each GEMM in float32 from the inputs the kernel actually had
  (the up GEMM's from ``x``, the down GEMM's from the stored intermediate): only the output's
  rounding and float32 summation order separate them from the kernel's;
* :func:`reference_layer`: the whole layer in float32 from ``x`` and the dequantized weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: Largest finite e4m3 value.
E4M3_MAX = 448.0
SCHEMES = ("block", "channel", "tensor")
#: Share of weight codes replaced by subnormal ones (e4m3 subnormals are rare in Gaussian weights).
SUBNORMAL_SHARE = 1 / 32
#: A Gemm runs one GEMM of the layer (the arguments of :func:`sglang_consumer_gpu.fp8.ops.fused_moe_weight_only`).
Gemm = Callable[..., Any]


def _groups(scheme: str, block: tuple[int, int] | None, n: int, k: int) -> tuple[int, int]:
    """Weight rows and columns one scale covers."""
    if scheme == "block":
        assert block is not None
        return block
    return (1, k) if scheme == "channel" else (n, k)


def _expand(scale: torch.Tensor, shape: tuple[int, int, int], groups: tuple[int, int]) -> torch.Tensor:
    """Scales ``[E, ceil(n / gn), ceil(k / gk)]`` -> one per weight element ``[E, n, k]``."""
    s = scale.reshape(shape[0], -(-shape[1] // groups[0]), -(-shape[2] // groups[1]))
    for dim, g in ((1, groups[0]), (2, groups[1])):
        s = s.repeat_interleave(g, dim=dim).narrow(dim, 0, shape[dim])
    return s


def quantize(
    w: torch.Tensor, scheme: str, block: tuple[int, int] | None = None, *, pow2: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``[E, n, k]`` -> (e4m3 codes, float32 scales in SGLang's layout for ``scheme``)."""
    E, n, k = w.shape
    gn, gk = _groups(scheme, block, n, k)
    a = torch.nn.functional.pad(w.float().abs(), (0, (-k) % gk, 0, (-n) % gn))
    amax = a.reshape(E, a.shape[1] // gn, gn, a.shape[2] // gk, gk).amax(dim=(2, 4))
    scale = amax.clamp_min(1e-12) / E4M3_MAX
    if pow2:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    codes = (w.float() / _expand(scale, tuple(w.shape), (gn, gk))).clamp(-E4M3_MAX, E4M3_MAX)
    codes = codes.to(torch.float8_e4m3fn)
    if scheme == "tensor":
        return codes, scale.reshape(E)
    return codes, scale  # block: [E, n/gn, k/gk]; channel: [E, n, 1]


def dequantize(
    codes: torch.Tensor, scale: torch.Tensor, scheme: str, block: tuple[int, int] | None = None
) -> torch.Tensor:
    """float32 weights ``codes * scale`` (each e4m3 value exact in float32)."""
    E, n, k = codes.shape
    return codes.float() * _expand(scale.float(), (E, n, k), _groups(scheme, block, n, k))


def _with_subnormals(codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``codes`` with :data:`SUBNORMAL_SHARE` of them replaced by random signed subnormal codes,
    so every layer exercises the decoder's one special case."""
    bits = codes.view(torch.uint8).clone()
    pick = torch.rand(bits.shape, generator=gen, device=bits.device) < SUBNORMAL_SHARE
    sub = torch.randint(1, 8, bits.shape, generator=gen, device=bits.device, dtype=torch.uint8)
    sign = (torch.rand(bits.shape, generator=gen, device=bits.device) < 0.5).to(torch.uint8) << 7
    bits = torch.where(pick, sub | sign, bits)
    return bits.view(torch.float8_e4m3fn)


@dataclass
class Fp8Layer:
    """One layer's inputs: ``x`` ``[M, K]``, ``w1`` ``[E, 2N, K]`` and ``w2`` ``[E, K, N]`` as e4m3
    codes with scales ``s1``/``s2``, the routing (``topk_weights`` float32, ``topk_ids`` int32)."""

    x: torch.Tensor
    w1: torch.Tensor
    s1: torch.Tensor
    w2: torch.Tensor
    s2: torch.Tensor
    topk_weights: torch.Tensor
    topk_ids: torch.Tensor
    scheme: str
    block: tuple[int, int] | None

    @property
    def per_channel(self) -> bool:
        return self.scheme == "channel"

    @property
    def block_shape(self) -> list[int] | None:
        return list(self.block) if self.scheme == "block" and self.block else None

    def weights(self, up: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.w1, self.s1) if up else (self.w2, self.s2)

    def dequantized(self, up: bool) -> torch.Tensor:
        w, s = self.weights(up)
        return dequantize(w, s, self.scheme, self.block)


def make_layer(
    E: int,
    N: int,
    K: int,
    topk: int,
    M: int,
    scheme: str,
    act_dtype: torch.dtype = torch.bfloat16,
    *,
    block: tuple[int, int] | None = (128, 128),
    idle: int = 0,
    device: str = "cpu",
    seed: int = 0,
    pow2: bool = False,
) -> Fp8Layer:
    """A random layer (see the module docstring); ``idle``: experts no token is routed to."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32)

    blk = block if scheme == "block" else None
    w1, s1 = quantize(randn(E, 2 * N, K) / K**0.5, scheme, blk, pow2=pow2)
    w2, s2 = quantize(randn(E, K, N) / N**0.5, scheme, blk, pow2=pow2)
    live = E - idle
    logits = randn(M, live)
    weights, ids = torch.topk(torch.softmax(logits, dim=-1), topk, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return Fp8Layer(
        x=randn(M, K).to(act_dtype),
        w1=_with_subnormals(w1, gen),
        s1=s1,
        w2=_with_subnormals(w2, gen),
        s2=s2,
        topk_weights=weights.contiguous(),
        topk_ids=ids.to(torch.int32),
        scheme=scheme,
        block=blk,
    )


@dataclass
class LayerRun:
    """What :func:`run_layer` produced: the up GEMM's output ``c1`` ``[M * topk, 2N]``, the down
    GEMM's input ``a2`` ``[M * topk, N]`` and output ``c2`` ``[M, topk, K]``, the layer output
    ``out`` ``[M, K]``, and the configs each GEMM ran."""

    c1: torch.Tensor
    a2: torch.Tensor
    c2: torch.Tensor
    out: torch.Tensor
    configs: tuple[Any, Any]


def run_layer(layer: Fp8Layer, aligned: tuple[Any, Any, Any], block_m: int, gemm: Gemm) -> LayerRun:
    """The layer through ``gemm`` (see the module docstring), on NaN-poisoned outputs; ``aligned``:
    SGLang's routing buffers (sorted slots, expert per block, padded total) for ``block_m``."""
    M, K = layer.x.shape
    topk = layer.topk_ids.shape[1]
    two_n = layer.w1.shape[1]
    dev, dt = layer.x.device, layer.x.dtype
    sorted_ids, expert_ids, num_post = aligned
    c1 = torch.full((M * topk, two_n), float("nan"), device=dev, dtype=dt)
    c2 = torch.full((M, topk, K), float("nan"), device=dev, dtype=dt)
    common = {"block_m": block_m, "block_shape": layer.block_shape, "per_channel_quant": layer.per_channel}
    up = gemm(layer.x, layer.w1, c1, layer.s1, layer.topk_weights, layer.topk_ids, sorted_ids, expert_ids,
              num_post, mul_routed_weight=False, top_k=topk, **common)  # fmt: skip
    gate, lin = c1.float().chunk(2, dim=-1)
    a2 = (torch.nn.functional.silu(gate) * lin).to(dt)
    down = gemm(a2, layer.w2, c2, layer.s2, layer.topk_weights, layer.topk_ids, sorted_ids, expert_ids,
                num_post, mul_routed_weight=True, top_k=1, **common)  # fmt: skip
    out = c2.float().sum(dim=1).to(dt)
    return LayerRun(c1, a2, c2, out, (up, down))


def _per_slot(
    A: torch.Tensor,
    W: torch.Tensor,
    ids: torch.Tensor,
    rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """float32 ``A[rows(m, j)] @ W[e].T`` for every routed slot (m, j) of expert e: ``[M, topk, n]``."""
    M, topk = ids.shape
    out = torch.zeros(M, topk, W.shape[1], device=A.device)
    for e in ids.unique().tolist():
        m, j = (ids == e).nonzero(as_tuple=True)
        out[m, j] = rows(m, j).float() @ W[e].T
    return out


def reference_gemms(
    layer: Fp8Layer, a2: torch.Tensor, *, zero_experts: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 outputs of both GEMMs, in ``c1``/``c2``'s layout, from the inputs the kernel had;
    slots routed to ``zero_experts`` (blocks marked -1) are zeros."""
    ids = layer.topk_ids.long()
    topk = ids.shape[1]
    ref1 = _per_slot(layer.x, layer.dequantized(True), ids, lambda m, j: layer.x[m])
    ref2 = _per_slot(a2, layer.dequantized(False), ids, lambda m, j: a2[m * topk + j])
    ref2 = ref2 * layer.topk_weights[..., None]
    for e in zero_experts:
        ref1[ids == e] = 0.0
        ref2[ids == e] = 0.0
    return ref1.reshape(-1, ref1.shape[-1]), ref2


def reference_layer(layer: Fp8Layer) -> torch.Tensor:
    """The layer in float32 from ``x`` and the dequantized weights: ``[M, K]``."""
    ids = layer.topk_ids.long()
    h = _per_slot(layer.x, layer.dequantized(True), ids, lambda m, j: layer.x[m])
    gate, lin = h.chunk(2, dim=-1)
    act = torch.nn.functional.silu(gate) * lin
    topk = ids.shape[1]
    flat = act.reshape(-1, act.shape[-1])
    y = _per_slot(flat, layer.dequantized(False), ids, lambda m, j: flat[m * topk + j])
    return (y * layer.topk_weights[..., None]).sum(dim=1)


def row_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest relative L2 error of a row (last dimension), NaN (an unwritten element) as infinite."""
    g = got.float().reshape(-1, got.shape[-1])
    r = ref.float().reshape(-1, ref.shape[-1])
    if not torch.isfinite(g).all():
        return float("inf")
    norm = r.norm(dim=-1).clamp_min(1e-30)
    return float(((g - r).norm(dim=-1) / norm).max())
