"""The shared-memory safety net for SGLang's Triton kernels.

- :mod:`.rules`: which variants of a kernel may run instead of one that does not fit (pure);
- :mod:`.guard`: the compile-time check and search, installed by
  :mod:`sglang_consumer_gpu.patches.safety_net` (whose ``install()`` applies it outside activation);
- :mod:`.state`: what it did, per process, for ``doctor`` (:func:`interventions`);

Importing this package imports neither Triton nor torch.
"""

from sglang_consumer_gpu.safety.state import interventions, lines, report

__all__ = ["interventions", "lines", "report"]

