"""One verdict for a launch: OK / AT RISK (why) / WILL FAIL (why). Pure.

Memory findings come from a :class:`~.memory.MemoryPlan`, constraint findings
from :mod:`.constraints`, kernel findings from the rows of :mod:`.kernels`, and the
families' own from their sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sglang_consumer_gpu.families.base import Section
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.models.launch import Launch
from sglang_consumer_gpu.planner.constraints import FAIL, INFO, RISK, Finding, check_constraints
from sglang_consumer_gpu.planner.kernels import KernelRow
from sglang_consumer_gpu.planner.memory import GIB, MemoryPlan, plan_memory

OK = "OK"
#: Process exit codes of ``doctor --model`` (2 is the CLI's bad-input code).
EXIT_CODES = {OK: 0, RISK: 1, FAIL: 3}


def _gib(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def memory_findings(mem: MemoryPlan, desc: ModelDescription, launch: Launch) -> list[Finding]:
    out: list[Finding] = []
    w = mem.worst.weights
    stage = f" (pipeline stage {mem.worst.stage})" if launch.pp > 1 else ""
    if w > mem.gpu_bytes:
        out.append(
            Finding(
                FAIL,
                "memory",
                f"the weights alone need {_gib(w)} per GPU{stage}; the GPU has {_gib(mem.gpu_bytes)}",
            )
        )
        return out
    if mem.kv_pool_bytes <= 0:
        minimum = 1 - (mem.pre_load_bytes - w) / mem.pre_load_bytes
        out.append(
            Finding(
                FAIL,
                "memory",
                f'SGLang raises "Loaded weights leave no GPU memory for the KV cache under --mem-fraction-static='
                f'{mem.fraction}. Raise --mem-fraction-static above {-(-minimum * 1000 // 1) / 1000:.3f} ..." '
                f"(weights {_gib(w)}{stage} vs the static pool {_gib(mem.pre_load_bytes * mem.fraction)})",
            )
        )
        return out
    if mem.kv_tokens < launch.context_len:
        out.append(
            Finding(
                RISK,
                "memory",
                f"the KV pool holds {mem.kv_tokens:,} tokens, fewer than one request at the full context length "
                f"({launch.context_len:,})",
            )
        )
    if mem.fraction > mem.default_fraction and mem.headroom_bytes < mem.sglang_reserve_bytes:
        out.append(
            Finding(
                RISK,
                "memory",
                f"--mem-fraction-static {mem.fraction} leaves {_gib(mem.headroom_bytes)} outside the static pool, less "
                f"than SGLang's own estimate for activations and CUDA graphs on this GPU ({_gib(mem.sglang_reserve_bytes)}, "
                f"behind its default {mem.default_fraction})",
            )
        )
    if mem.moe_activation_bytes > mem.headroom_bytes:
        out.append(
            Finding(
                RISK,
                "memory",
                f"the fused-MoE buffers of one chunked-prefill batch ({_gib(mem.moe_activation_bytes)}) exceed the "
                f"{_gib(mem.headroom_bytes)} outside the static pool",
            )
        )
    return out


def kernel_findings(rows: list[KernelRow], spec: GpuSpec) -> list[Finding]:
    out: list[Finding] = []
    limit = spec.smem_per_block_optin
    for r in rows:
        name = f"{r.kernel} {r.batches}"
        if r.plugin_fit.fits is False:
            out.append(
                Finding(
                    FAIL, "kernels", f"{name}: the plugin's {r.plugin_config} {r.plugin_fit.label(limit)}"
                )
            )
        elif r.plugin_fit.fits is None and r.plugin_fit.shared is not None:
            out.append(
                Finding(RISK, "kernels", f"{name}: {r.plugin_config} not verified ({r.plugin_fit.how})")
            )
        if r.sglang_alone_fails and r.plugin_fit.fits is not False:
            out.append(
                Finding(
                    INFO,
                    "kernels",
                    f"{name}: SGLang alone would fail here ({r.sglang_config}: {r.sglang_fit.label(limit)}); "
                    "the plugin's choice fits",
                )
            )
    return out


@dataclass
class Assessment:
    """Everything the verdict rests on, for one launch on one GPU kind."""

    spec: GpuSpec
    desc: ModelDescription
    launch: Launch
    memory: MemoryPlan | None
    findings: list[Finding]
    kernels: list[KernelRow] = field(default_factory=list)
    kernel_notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        sev = {f.severity for f in self.findings}
        return FAIL if FAIL in sev else RISK if RISK in sev else OK

    @property
    def reasons(self) -> list[Finding]:
        top = self.verdict
        return [f for f in self.findings if f.severity == top] if top != OK else []

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": [f.text for f in self.reasons],
            "gpu": self.spec.to_dict(),
            "model": self.desc.to_dict(),
            "launch": self.launch.to_dict(),
            "memory": self.memory.to_dict() if self.memory else None,
            "findings": [f.to_dict() for f in self.findings],
            "kernels": [r.to_dict() for r in self.kernels],
            "kernel_notes": list(self.kernel_notes),
            "sections": {s.area: s.to_dict() for s in self.sections},
        }


def assess(
    spec: GpuSpec,
    desc: ModelDescription,
    launch: Launch,
    gpu_bytes: float,
    *,
    gpus_per_node: int | None = None,
    kernels: list[KernelRow] | None = None,
    kernel_notes: list[str] | None = None,
    sections: list[Section] | None = None,
) -> Assessment:
    """The verdict for ``launch`` of ``desc`` on ``spec`` (``gpu_bytes`` of memory per GPU)."""
    findings = check_constraints(spec, desc, launch, gpus_per_node=gpus_per_node)
    layout_broken = any(f.severity == FAIL and f.area == "layout" for f in findings)
    mem = None if layout_broken else plan_memory(desc, launch, gpu_bytes)
    if mem is not None:
        findings += memory_findings(mem, desc, launch)
    rows = kernels or []
    findings += kernel_findings(rows, spec)
    for section in sections or []:
        findings += section.findings
    return Assessment(spec, desc, launch, mem, findings, rows, list(kernel_notes or []), list(sections or []))
