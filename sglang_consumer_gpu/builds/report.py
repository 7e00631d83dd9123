"""For one GPU: can the installed torch, sgl-kernel, Triton and FlashInfer run
or build code for it, read from their binaries, and if not, what to change.

Nothing here imports torch, sgl_kernel, triton or flashinfer (``doctor``
answers in about a second): the packages are found on disk
(``versions.package_dirs``), their libraries read with
:mod:`~sglang_consumer_gpu.builds.fatbin`, their compilers asked with
:mod:`~sglang_consumer_gpu.builds.tools`, each answer cached until the file
changes (:mod:`~sglang_consumer_gpu.builds.cache`). Fixes name versions from
:mod:`~sglang_consumer_gpu.builds.releases`, the facts read from real wheels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from sglang_consumer_gpu.builds.items import PROBLEMS, Item, Package
from sglang_consumer_gpu.builds.libraries import sgl_kernel_package, torch_package
from sglang_consumer_gpu.builds.nvrtc import nvrtc_package
from sglang_consumer_gpu.builds.toolchains import flashinfer_package, triton_package
from sglang_consumer_gpu.hardware import GpuSpec


def sglang_pins() -> dict[str, str]:
    """The exact versions the installed SGLang requires (``sglang-kernel==0.4.10`` -> {"sglang-kernel": "0.4.10"})."""
    try:
        reqs = metadata.requires("sglang") or []
    except metadata.PackageNotFoundError:
        return {}
    out = {}
    for text in reqs:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's pin, or another platform's
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            out[req.name.replace("_", "-").lower()] = exact[0]
    return out


@dataclass
class BuildsReport:
    gpu: GpuSpec | None
    packages: list[Package]

    @property
    def problems(self) -> list[tuple[Package, Item]]:
        return [(p, i) for p in self.packages for i in p.items if i.status in PROBLEMS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu.name if self.gpu else None,
            "arch": self.gpu.arch_name if self.gpu else None,
            "ok": not self.problems,
            "packages": [p.to_dict() for p in self.packages],
        }


def collect(spec: GpuSpec | None, environ: Mapping[str, str] | None = None) -> BuildsReport:
    """The builds report for ``spec`` (None: list what is there, judge nothing)."""
    env = os.environ if environ is None else environ
    pins = sglang_pins()
    torch_pkg, torch_core = torch_package(spec, pins)
    sgl_pkg, sgl_core = sgl_kernel_package(spec, pins)
    packages = [torch_pkg, sgl_pkg, triton_package(spec, env), flashinfer_package(spec, env, pins)]
    linked = nvrtc_package(torch_core, sgl_core, env)
    return BuildsReport(spec, packages + ([linked] if linked.items else []))
