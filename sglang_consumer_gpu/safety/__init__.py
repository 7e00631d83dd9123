"""The shared-memory safety net for SGLang's Triton kernels.

- :mod:`.rules`: which variants of a kernel may run instead of one that does not fit (pure);
- :mod:`.guard`: the compile-time check and search, installed by
  :mod:`sglang_consumer_gpu.patches.safety_net`;
- :mod:`.state`: what it did, per process, for ``doctor`` (:func:`interventions`);
- :mod:`.emulated`: Triton's launch path with a given shared-memory limit and no GPU (tests, sweeps).

Importing this package imports neither Triton nor torch.
"""

from sglang_consumer_gpu.safety.state import interventions, lines, report

__all__ = ["install", "interventions", "lines", "report"]


def install() -> dict[str, str]:
    """Register and apply the safety-net patches now, for scripts that do not go
    through the plugin's activation; returns each patch's status. Idempotent."""
    from sglang_consumer_gpu.patches import registry, safety_net

    known = {p.name for p in registry.patches()}
    for patch in safety_net.PATCHES:
        if patch.name not in known:
            registry.register(patch)
        if not registry.installed(patch):
            registry.apply_patch(patch)
    results = registry.results()
    return {p.name: results[p.name].status.value for p in safety_net.PATCHES}
