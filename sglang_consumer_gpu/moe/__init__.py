"""Fused MoE on consumer GPUs: config lookup, bundled tuned configs, a
shared-memory-aware heuristic.

SGLang's fused-MoE Triton kernel takes its tile sizes from JSON files tuned
per (E, N, device, dtype) and falls back to a fixed default tile when no file
matches. Consumer and workstation GPUs (sm_86/sm_89/sm_120, 101376 bytes of
shared memory per block) rarely have a file, and tiles tuned for an H100 do
not fit them. This package decides, as a pure function of a ``GpuSpec``,
which config SGLang gets: user-tuned file -> bundled file -> SGLang's own
file -> heuristic (see :mod:`sglang_consumer_gpu.moe.lookup`).
"""
