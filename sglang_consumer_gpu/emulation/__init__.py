"""Emulate a consumer GPU's shared-memory limit on a data-center GPU.

With ``SGLANG_CONSUMER_GPU_EMULATE_SMEM=<bytes>`` set, every Python process
(SGLang's launcher, its spawned schedulers and detokenizer: the ``.pth`` hook
runs in each) reports ``<bytes>`` as the GPU's shared memory per block:

* Triton's CUDA driver (``CudaUtils.get_device_properties()["max_shared_mem"]``),
  which Triton compares with a compiled kernel's ``metadata.shared`` before the
  first launch, so a kernel that does not fit raises the same
  ``OutOfResources ... Hardware limit: <bytes>`` a consumer GPU raises;
* ``torch.cuda.get_device_properties(i).shared_memory_per_block_optin``, which
  SGLang's own shared-memory-aware defaults read;
* the plugin's live :class:`~sglang_consumer_gpu.hardware.GpuSpec` (same name,
  ``source`` marked), so the plugin decides for "this GPU with <bytes>".

Kernels still compile for the real GPU (sm_90 on an H100/H200): shared-memory
needs differ between architectures, so this emulates a limit, not a consumer
GPU. The cap is independent of the off switch ``SGLANG_CONSUMER_GPU=0``, which
gives unpatched SGLang under the cap. See docs/e2e.md.

Without the GPU: :mod:`.no_gpu` runs Triton's real launch path against a chosen
limit on a machine with no GPU at all (tests and sweeps of the safety net), on
the fake driver of :mod:`.triton_driver`, which the compile-only oracle uses too.
"""

from sglang_consumer_gpu.settings import EMULATE_SMEM as ENV_SMEM
from sglang_consumer_gpu.settings import emulated_smem_cap as smem_cap


def capped(real: int, cap: int | None) -> int:
    """What is reported for a real limit under ``cap``: never more than the GPU has."""
    return real if cap is None else min(real, cap)


__all__ = ["ENV_SMEM", "capped", "smem_cap"]
