"""A Triton target for a GPU that is not present: compile for its architecture, launch nothing.

:func:`compile_only` makes Triton's active driver one whose current target is
the spec's ``GPUTarget("cuda", arch, 32)``; :class:`Resources` is what one
compiled kernel needs of that GPU. The rest of the oracle builds on these two.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec

_lock = threading.RLock()


@dataclass(frozen=True)
class Resources:
    """What one compiled kernel needs, and whether the GPU has it."""

    kernel: str
    target: str  # "sm_89"
    shared: int  # bytes of shared memory per block the launch would request
    limit: int  # the GPU's opt-in shared memory per block
    num_warps: int
    num_stages: int

    @property
    def fits(self) -> bool:
        return self.shared <= self.limit

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fits"] = self.fits
        return d


def _cannot_run(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the compile-only driver cannot run kernels")


def _make_driver(arch: int) -> Any:
    """A Triton driver that compiles for ``sm_<arch>`` and can launch nothing
    (a fake device id per target, so sm_89 and sm_90 compiles never share a binder)."""
    from sglang_consumer_gpu.emulation.triton_driver import fake_driver

    return fake_driver(arch, 10_000 + arch, benchmarker=_cannot_run)


@contextlib.contextmanager
def compile_only(spec: GpuSpec) -> Iterator[None]:
    """Inside the block, Triton compiles for ``spec``'s architecture and
    launches nothing: a launcher run with ``warmup=True`` only compiles."""
    from triton.runtime.driver import driver

    from sglang_consumer_gpu.emulation.triton_driver import own_codegen

    with _lock, own_codegen():
        previous = driver._active
        driver.set_active(_make_driver(spec.arch))
        try:
            yield
        finally:
            driver._active = previous
