"""Target of a multiprocessing 'spawn' child (must be importable by module name)."""

from __future__ import annotations


def probe(queue) -> None:
    import sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe  # noqa: F401

    from sglang_consumer_gpu.patching import registry

    queue.put(
        {
            "results": {k: v.status.value for k, v in registry.results().items()},
            "installed": {p.name: registry.installed(p) for p in registry.patches()},
        }
    )
