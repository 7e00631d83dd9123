"""Triton's real launch path with a chosen shared-memory limit, on a machine without the GPU.

Inside :func:`emulated_gpu`, Triton compiles for the spec's architecture (as
the compile-only oracle does) and a ``kernel[grid](...)`` call goes all the
way through ``JITFunction.run``: specialization, cache lookup, compile,
``CompiledKernel._init_handles`` -- where Triton itself compares
``metadata.shared`` with the driver's ``max_shared_mem``, here the spec's
``smem_per_block_optin``, and raises ``OutOfResources`` -- and the launcher
call, which here records an :class:`EmulatedLaunch` instead of running
anything. ``meta`` tensors work as arguments (their data pointer is 0, which
specializes as 16-byte aligned, like real allocations).

So the safety net's bookkeeping, messages and thread safety can be tested
against real compiles and Triton's own check, with no GPU and no stand-in for
SGLang. Each block gets a fresh device id, so kernels compiled in one block
(for one limit) are never reused in another.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sglang_consumer_gpu.emulation.triton_driver import fake_driver, own_codegen
from sglang_consumer_gpu.hardware.spec import GpuSpec

_lock = threading.RLock()
_device_ids = itertools.count(40_000)


@dataclass(frozen=True)
class EmulatedLaunch:
    """One launch Triton made (the kernel it loaded and called)."""

    kernel: str
    module: str
    num_stages: int
    num_warps: int
    shared: int
    constexprs: dict[str, Any] = field(default_factory=dict)


def _make_driver(spec: GpuSpec, launches: list[EmulatedLaunch]) -> Any:
    arch, limit, device = spec.arch, spec.smem_per_block_optin, next(_device_ids)
    record_lock = threading.Lock()

    class Utils:
        def get_device_properties(self, device: int) -> dict[str, int]:
            return {
                "max_shared_mem": limit,
                "multiprocessor_count": spec.sm_count,
                "max_num_regs": 65536,
                "warpSize": 32,
                "sm_clock_rate": 0,
                "mem_clock_rate": 0,
                "mem_bus_width": 0,
            }

        def load_binary(
            self, name: str, kernel: bytes, shared: int, device: int
        ) -> tuple[int, int, int, int, int]:
            return (1, 1, 0, 0, 1024)  # module, function, registers, spills, max threads per block

        def unload_module(self, module: Any) -> None:
            pass

    class Launcher:
        def __init__(self, src: Any, metadata: Any) -> None:
            fn = getattr(src, "fn", None)
            names = getattr(fn, "arg_names", [])
            consts = getattr(src, "constants", {}) or {}
            self.launch = EmulatedLaunch(
                kernel=getattr(src, "name", "?"),
                module=str(getattr(fn, "module", "")),
                num_stages=int(metadata.num_stages),
                num_warps=int(metadata.num_warps),
                shared=int(metadata.shared),
                constexprs={names[k[0]]: v for k, v in consts.items() if len(k) == 1 and k[0] < len(names)},
            )

        def __call__(self, *args: Any) -> None:
            with record_lock:
                launches.append(self.launch)

    def bench(kernel_call: Any, quantiles: Any = None, **kwargs: Any) -> list[float]:
        kernel_call()  # raises OutOfResources for a config that does not fit, as on a GPU
        return [1.0, 1.0, 1.0]

    return fake_driver(arch, device, benchmarker=bench, utils=Utils(), launcher_cls=Launcher)


@contextlib.contextmanager
def emulated_gpu(spec: GpuSpec) -> Iterator[list[EmulatedLaunch]]:
    """Inside the block Triton compiles for ``spec`` and checks launches against its
    shared memory; the yielded list receives every launch (nothing runs)."""
    from triton.runtime.driver import driver

    launches: list[EmulatedLaunch] = []
    with _lock, own_codegen():
        previous = driver._active
        driver.set_active(_make_driver(spec, launches))
        try:
            yield launches
        finally:
            driver._active = previous
