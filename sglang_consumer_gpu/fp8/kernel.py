"""The weight-only FP8 fused-MoE Triton kernel: e4m3 weights, bf16/fp16 activations and math.

One program computes a ``BLOCK_SIZE_M x BLOCK_SIZE_N`` tile of one GEMM of a MoE layer for one
expert, in the layout SGLang's fused-MoE runner prepares (``moe_align_block_size``):

* ``sorted_token_ids`` lists, expert by expert, the routed slots ``token * top_k + k``, each
  expert's run padded to a multiple of ``BLOCK_SIZE_M`` with the value ``num_valid_tokens``
  (a slot that does not exist); ``expert_ids`` holds one expert per ``BLOCK_SIZE_M`` rows, -1
  for a block whose expert is not on this rank: its rows get zeros;
* row ``slot`` of the output ``C`` is ``A[slot // top_k] @ W[expert].T`` (the up GEMM reads a
  token's hidden state once per routed expert with ``top_k`` = the layer's top-k; the down GEMM
  reads the slot's own row with ``top_k`` = 1), times the slot's routing weight where
  ``MUL_ROUTED_WEIGHT``.

Weights arrive as the bytes of ``float8_e4m3fn`` (a ``uint8`` view: Triton refuses to name e4m3
below sm_89) and are decoded in registers by :func:`e4m3_to` with integer arithmetic, exactly:
every e4m3 value is a bf16 and an fp16 value. The dot runs in the activations' dtype with a
float32 accumulator; the dequantization scales are applied to the float32 products, never to
the 16-bit weights (no second rounding, ``BLOCK_SIZE_N`` multiplies per tile instead of
``BLOCK_SIZE_K * BLOCK_SIZE_N``):

* ``SCALE == BLOCK``: ``scale[e, n // group_n, k // group_k]``, one per K tile (so
  ``BLOCK_SIZE_K`` divides ``group_k``, which the launcher checks): ``acc += dot * s[n]``;
* ``SCALE == CHANNEL``: ``scale[e, n]`` (``[E, N, 1]``), once after the K loop;
* ``SCALE == TENSOR``: ``scale[e]``, once after the K loop.

Activation scales do not exist here: the activations are never quantized.
"""

from __future__ import annotations

import triton
import triton.language as tl

#: ``SCALE`` values: how the weights' dequantization scales are laid out.
BLOCK: tl.constexpr = tl.constexpr(0)
CHANNEL: tl.constexpr = tl.constexpr(1)
TENSOR: tl.constexpr = tl.constexpr(2)


@triton.jit
def e4m3_to(code, dtype: tl.constexpr):
    """``float8_e4m3fn`` codes (``uint8``) -> ``dtype`` (bf16 or fp16) values, exactly.

    A code is ``s eeee mmm`` (exponent bias 7, no infinities, ``x111 1111`` is NaN; ``e == 0`` is
    subnormal: ``2^-6 * m / 8``). fp16: the seven magnitude bits shifted into fp16's exponent and
    mantissa fields give the value times 2^-8 (bias 15 instead of 7), subnormal codes included,
    so one float32 multiply by 2^8 restores it. bf16 (bias 127): adding 120 to the exponent
    field makes normal codes exact; a subnormal code then reads ``2^-7 (1 + m / 8)`` and
    ``2 (v - 2^-7)`` turns it into ``2^-6 m / 8``. Every intermediate is a normal float32, so no
    denormal flushing can touch it.
    """
    c = code.to(tl.int16)
    mag = c & 0x7F
    if dtype == tl.float16:
        v = (mag << 7).to(tl.float16, bitcast=True).to(tl.float32) * 256.0
    else:
        v = ((mag << 4) + 0x3C00).to(tl.bfloat16, bitcast=True).to(tl.float32)
        v = tl.where(mag < 8, (v - 0.0078125) * 2.0, v)
    v = tl.where(c >= 0x80, -v, v)
    v = tl.where(mag == 0x7F, float("nan"), v)
    return v.to(dtype)


@triton.jit
def e4m3_decode_kernel(code_ptr, out_ptr, n, BLOCK_SIZE: tl.constexpr):
    """``out[i] = e4m3_to(code[i])``: the decoder on its own, checked against torch's e4m3."""
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n
    code = tl.load(code_ptr + offs, mask=mask, other=0)
    tl.store(out_ptr + offs, e4m3_to(code, out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["EM", "num_valid_tokens"])
def fused_moe_fp8_weight_only_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    b_scale_ptr,
    bias_ptr,
    topk_weights_ptr,
    sorted_token_ids_ptr,
    expert_ids_ptr,
    num_tokens_post_padded_ptr,
    N,
    K,
    EM,
    num_valid_tokens,
    stride_am,
    stride_ak,
    stride_be,
    stride_bn,
    stride_bk,
    stride_cm,
    stride_cn,
    stride_se,
    stride_sn,
    stride_sk,
    stride_bias_e,
    stride_bias_n,
    group_n: tl.constexpr,
    group_k: tl.constexpr,
    SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    MUL_ROUTED_WEIGHT: tl.constexpr,
    top_k: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_SIZE_M: tl.constexpr,
    BLOCK_SIZE_N: tl.constexpr,
    BLOCK_SIZE_K: tl.constexpr,
    GROUP_SIZE_M: tl.constexpr,
):
    # Grouped launch order: GROUP_SIZE_M row blocks walk the N tiles together, so a weight
    # tile they share is read from L2 rather than memory.
    pid = tl.program_id(0)
    col_blocks = tl.cdiv(N, BLOCK_SIZE_N)
    pid_m, pid_n = tl.swizzle2d(
        pid // col_blocks, pid % col_blocks, tl.cdiv(EM, BLOCK_SIZE_M), col_blocks, GROUP_SIZE_M
    )

    if pid_m * BLOCK_SIZE_M >= tl.load(num_tokens_post_padded_ptr):
        return  # past the last expert's padded run: no rows here

    rows = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M).to(tl.int64)
    slots = tl.load(sorted_token_ids_ptr + rows).to(tl.int64)
    live = slots < num_valid_tokens
    cols = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N).to(tl.int64)
    out_ptrs = c_ptr + slots[:, None] * stride_cm + cols[None, :] * stride_cn
    out_mask = live[:, None] & (cols[None, :] < N)

    expert = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
    if expert < 0:  # the expert lives on another rank: its slots contribute nothing here
        tl.store(
            out_ptrs, tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=c_ptr.dtype.element_ty), mask=out_mask
        )
        return

    # Columns past N wrap onto real ones (loads stay in bounds, no mask); they are never stored.
    wcols = cols % N
    ks = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + (slots // top_k)[:, None] * stride_am + ks[None, :] * stride_ak
    b_ptrs = b_ptr + expert * stride_be + wcols[None, :] * stride_bn + ks[:, None] * stride_bk
    compute = a_ptr.dtype.element_ty
    if SCALE == CHANNEL:
        scale = tl.load(b_scale_ptr + expert * stride_se + wcols * stride_sn)
    if SCALE == BLOCK:
        scale_ptrs = b_scale_ptr + expert * stride_se + (wcols // group_n) * stride_sn

    acc = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_SIZE_K):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=live[:, None], other=0.0)
            code = tl.load(b_ptrs)
        else:
            a = tl.load(a_ptrs, mask=live[:, None] & (ks[None, :] < K - k0), other=0.0)
            code = tl.load(b_ptrs, mask=ks[:, None] < K - k0, other=0)  # code 0 is +0.0
        w = e4m3_to(code, compute)
        if SCALE == BLOCK:
            s = tl.load(scale_ptrs + (k0 // group_k) * stride_sk)
            acc += tl.dot(a, w) * s[None, :]
        else:
            acc = tl.dot(a, w, acc)
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk

    if SCALE == CHANNEL:
        acc *= scale[None, :]
    if SCALE == TENSOR:
        acc *= tl.load(b_scale_ptr + expert * stride_se)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + expert * stride_bias_e + wcols * stride_bias_n).to(tl.float32)[None, :]
    if MUL_ROUTED_WEIGHT:
        acc *= tl.load(topk_weights_ptr + slots, mask=live, other=0.0)[:, None]
    tl.store(out_ptrs, acc.to(c_ptr.dtype.element_ty), mask=out_mask)
