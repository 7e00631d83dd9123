"""Hardware model: what a GPU can do, as plain data.

Every decision the plugin makes is a pure function of a :class:`GpuSpec`, so a
decision for an RTX 4090 can be computed and tested on a machine without one.
"""

from sglang_consumer_gpu.hardware.catalog import KNOWN_GPUS, find_gpu, known_gpu_names
from sglang_consumer_gpu.hardware.current import current_spec, live_specs, override_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec

__all__ = [
    "KNOWN_GPUS",
    "GpuSpec",
    "current_spec",
    "find_gpu",
    "known_gpu_names",
    "live_specs",
    "override_spec",
]
