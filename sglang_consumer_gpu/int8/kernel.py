"""The Triton int8 GEMM: int8 x int8 -> int32 accumulate -> per-token/per-channel
scale -> + bias -> bf16/fp16.

One kernel, two epilogues selected by a constexpr: ``RAW_ACC`` writes the int32
accumulator unscaled (what ``torch._int_mm`` returns, so the accumulation can be
checked for exact equality), otherwise the epilogue computes, in float32,
``acc * scale_a[m] * scale_b[n] (+ bias[n])`` and rounds once to the output
dtype, the order sgl-kernel's CUTLASS epilogue uses.

M (the token count) is not specialised: decode (M = 1), multiples of 16 and
odd prefill lengths share one compiled kernel per tile instead of three.

K is a multiple of 16 (the launcher checks it, as sgl-kernel does), so a K tile
never needs a mask when ``BLOCK_K`` divides K (``EVEN_K``); otherwise the tail
is masked with zeros, which add nothing to an integer sum.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["M"])
def int8_scaled_mm_kernel(
    a_ptr,
    b_ptr,
    scale_a_ptr,
    scale_b_ptr,
    bias_ptr,
    c_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    HAS_BIAS: tl.constexpr,
    RAW_ACC: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # Grouped ordering: GROUP_M row-tiles share each B column-tile while it is
    # in L2 (the standard Triton matmul swizzle).
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Wrapped row/column indices keep loads in bounds without masks; the rows
    # and columns they duplicate are never stored.
    offs_am = tl.max_contiguous(tl.multiple_of(offs_m % M, BLOCK_M), BLOCK_M)
    offs_bn = tl.max_contiguous(tl.multiple_of(offs_n % N, BLOCK_N), BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if RAW_ACC:
        tl.store(c_ptrs, acc, mask=c_mask)
    else:
        scale_a = tl.load(scale_a_ptr + offs_am)
        scale_b = tl.load(scale_b_ptr + offs_bn)
        out = acc.to(tl.float32) * scale_b[None, :] * scale_a[:, None]
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_bn)
            out = out + bias.to(tl.float32)[None, :]
        tl.store(c_ptrs, out.to(c_ptr.dtype.element_ty), mask=c_mask)
