"""What a patch is: a declaration the registry can check before touching SGLang."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec


class Status(str, enum.Enum):
    APPLIED = "applied"
    NOT_NEEDED = "not needed on this GPU"
    UPSTREAM_FIXED = "already fixed upstream"
    TARGET_MISSING = "target missing"
    VERSION_SKIPPED = "version not covered"
    FAILED = "failed"
    PENDING = "waiting for import"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Patch:
    """One change to SGLang, with everything needed to decide whether to make it.

    ``build(original, module)`` returns the replacement for ``module.attr``; it
    runs only when the target exists, the versions match, upstream has not
    fixed it and the GPU needs it. The registry wraps the replacement so that
    at call time it still defers to ``original`` whenever ``needed_on`` is
    false for the GPU decisions are being made for.
    """

    name: str
    module: str  # dotted module path of the target
    attr: str  # attribute inside the module ("func" or "Class.method")
    why: str  # one line: the failure this prevents
    build: Callable[[Callable[..., Any], ModuleType], Callable[..., Any]]
    needed_on: Callable[[GpuSpec], bool] = lambda spec: spec.is_low_smem
    upstream_fixed: Callable[[ModuleType], bool] = lambda module: False
    sglang_versions: str = ""  # packaging specifier, "" = any
    triton_versions: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"{self.module}.{self.attr}"


@dataclass
class PatchResult:
    status: Status
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status.value, "detail": self.detail}
