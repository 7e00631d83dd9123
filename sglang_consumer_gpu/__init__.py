"""sglang-consumer-gpu: SGLang kernel choices that fit consumer and workstation NVIDIA GPUs.

This package is imported by a ``.pth`` file in every Python process, so this
module must stay tiny: no torch, no triton, no sglang imports here.
"""

__version__ = "0.1.0"
