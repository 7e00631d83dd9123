"""A Triton driver for a GPU that is not in the machine.

Two tools stand on it: the compile-only oracle (:mod:`sglang_consumer_gpu.oracle.target`:
compile for an architecture, launch nothing, no device properties, so the safety
net stands aside) and the no-GPU emulated launch path
(:mod:`sglang_consumer_gpu.emulation.no_gpu`: device properties with a chosen
shared-memory limit, so Triton's own launch check runs). They differ only in the
pieces passed here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

#: Triton reads it at every compile (``CUDABackend.parse_options``); the arch-faithful emulation sets it.
OVERRIDE_ARCH = "TRITON_OVERRIDE_ARCH"


@contextlib.contextmanager
def own_codegen() -> Iterator[None]:
    """Inside the block Triton generates code for the driver's target, not for an emulated GPU's
    ``TRITON_OVERRIDE_ARCH`` (a compile for an absent GPU asks about that GPU). Callers hold a lock:
    the variable is the process's."""
    saved = os.environ.pop(OVERRIDE_ARCH, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[OVERRIDE_ARCH] = saved


def fake_driver(
    arch: int,
    device: int,
    *,
    benchmarker: Callable[..., Any],
    utils: Any = None,
    launcher_cls: type | None = None,
) -> Any:
    """A driver whose current target is ``GPUTarget("cuda", arch, 32)`` on ``device``.

    ``device`` must differ per target and per limit: Triton keys its per-device
    binder (which captures the target) and its kernel cache by device id.
    Without ``utils`` Triton cannot load or size a kernel (compile only).
    """
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase

    class FakeDriver(DriverBase):
        @classmethod
        def is_active(cls) -> bool:
            return False

        def map_python_to_cpp_type(self, ty: str) -> str:
            from triton.backends.nvidia.driver import ty_to_cpp

            return ty_to_cpp(ty)

        def get_current_target(self) -> Any:
            return GPUTarget("cuda", arch, 32)

        def get_current_device(self) -> int:
            return device

        def set_current_device(self, device: int) -> None:
            pass

        def get_current_stream(self, device: int | None = None) -> int:
            return 0

        def get_device_capability(self, device: int | None = None) -> tuple[int, int]:
            return divmod(arch, 10)

        def get_active_torch_device(self) -> Any:
            import torch

            return torch.device("meta")

        def get_device_interface(self) -> Any:
            import torch

            return torch.cuda

        def get_benchmarker(self) -> Any:
            return benchmarker

    driver = FakeDriver()
    if utils is not None:
        driver.utils = utils
    if launcher_cls is not None:
        driver.launcher_cls = launcher_cls
    return driver
