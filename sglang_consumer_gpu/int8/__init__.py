"""A Triton int8 scaled GEMM for GPUs sgl-kernel's ``int8_scaled_mm`` does not
serve (sm_100/sm_120: it raises), with a tile table proven to fit 101,376-byte
shared memory. Heavy imports (torch, triton) happen in :mod:`.ops` only."""

from __future__ import annotations

from sglang_consumer_gpu.int8.backend import int8_backend_for, needed_on, sgl_kernel_int8_support

__all__ = ["int8_backend_for", "needed_on", "sgl_kernel_int8_support"]
