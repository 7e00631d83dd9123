"""Which GPU architectures the installed torch, sgl-kernel, FlashInfer and Triton can
run or build for, read from their binaries, and what to change when one cannot."""
