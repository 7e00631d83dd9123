"""Which backends a launch runs on the GPU: SGLang's choice, the plugin's change, and what runs. Pure.

The attention backends come from SGLang's own resolution, run twice by :mod:`.sglang_edge`
(alone, and with the plugin's backend patches); the MoE runner for MXFP4 experts from the
same resolution and :func:`sglang_consumer_gpu.backends.mxfp4_moe_path`. A backend with no
kernels for the GPU is a WILL FAIL (SGLang stops at startup or after loading the weights)
with the flag that avoids it; a choice the plugin changes is a note saying what SGLang alone
would do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sglang_consumer_gpu.backends import FALLBACK, attention_runs, mxfp4_moe_path, why_no_kernels
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.planner.constraints import FAIL, INFO, RISK, Finding
from sglang_consumer_gpu.planner.launch import Launch

AREA = "backends"


@dataclass(frozen=True)
class BackendRow:
    """One backend choice of a launch."""

    role: str  # "attention", "attention (prefill)", "linear attention", "MoE experts (MXFP4)", ...
    sglang: str  # what SGLang alone picks
    plugin: str  # what is picked with the plugin
    runs: bool | None  # the plugin's pick runs on the GPU (None: no fact)
    runs_alone: bool | None  # SGLang's pick runs without the plugin
    flag: str  # the launch flag that chooses it
    note: str = ""
    kernel: str = ""  # what the choice runs, where its name does not say
    fix: str = ""  # the flag's value that would serve this GPU better ("" none known, or none needed)
    upcast: bool = False  # MXFP4 experts held in bf16

    @property
    def changed(self) -> bool:
        """The plugin picks something else, or makes SGLang's pick run."""
        return self.plugin != self.sglang or self.runs != self.runs_alone

    def line(self, spec: GpuSpec) -> str:
        """One line of ``doctor --model``'s Backends section."""
        if self.plugin != self.sglang:
            choice = f"{self.sglang} -> {self.plugin}"
        else:
            choice = self.sglang + ("" if self.changed else " (unchanged)")
        kernel = f": {self.kernel}" if self.kernel else ""
        runs = {True: f" [kernels for {spec.arch_name}]", False: f" [no kernels for {spec.arch_name}]"}
        note = f"; {self.note}" if self.note else ""
        return f"{self.role:<20} {choice}{kernel}{runs.get(self.runs, '')}{note}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attention_rows(spec: GpuSpec, desc: ModelDescription, launch: Launch) -> list[BackendRow]:
    mla = desc.attention.is_mla
    plugin, alone = launch.attention_backends, launch.sglang_attention_backends
    if plugin[0] == plugin[1] and alone[0] == alone[1]:
        sides = [("attention", "--attention-backend", plugin[0], alone[0])]
    else:
        sides = [
            ("attention (prefill)", "--prefill-attention-backend", plugin[0], alone[0]),
            ("attention (decode)", "--decode-attention-backend", plugin[1], alone[1]),
        ]
    rows = []
    for role, flag, mine, theirs in sides:
        if not mine:
            continue
        runs = attention_runs(spec, mine, mla=mla)
        if mine != theirs:
            note = f"SGLang's {theirs} has no kernels here: {why_no_kernels(spec, theirs, mla=mla)}"
        elif runs is False:
            note = why_no_kernels(spec, mine, mla=mla)
        else:
            note = ""
        fix = FALLBACK if runs is False else ""
        rows.append(
            BackendRow(role, theirs, mine, runs, attention_runs(spec, theirs, mla=mla), flag, note, fix=fix)
        )
    return rows


def backend_rows(spec: GpuSpec, desc: ModelDescription, launch: Launch) -> list[BackendRow]:
    """The launch's attention, linear-attention and MoE-runner choices on ``spec``."""
    rows = _attention_rows(spec, desc, launch)
    prefill, decode = launch.linear_attention_backends
    if prefill:
        both = prefill if prefill == decode else f"{prefill} (prefill), {decode} (decode)"
        rows.append(BackendRow("linear attention", both, both, None, None, "--linear-attn-backend"))
    runner = launch.moe_runner_backend
    if desc.quantization.method == "mxfp4" and desc.is_moe:
        path = mxfp4_moe_path(spec, runner)
        better = spec.has_marlin and (not path.runs or path.upcast) and runner != "marlin"
        rows.append(
            BackendRow(
                "MoE experts (MXFP4)",
                runner,
                runner,
                path.runs,
                path.sglang_alone_runs,
                "--moe-runner-backend",
                path.note,
                path.kernel,
                "marlin" if better else "",
                path.upcast,
            )
        )
    elif desc.is_moe:
        triton = runner in ("auto", "triton") and desc.quantization.moe_dtype != "other"
        kernel = "SGLang's Triton fused_moe_kernel (see Kernels)" if triton else ""
        rows.append(
            BackendRow("MoE runner", runner, runner, None, None, "--moe-runner-backend", kernel=kernel)
        )
    return rows


def _passed(launch: Launch, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in launch.argv)


def backend_findings(spec: GpuSpec, desc: ModelDescription, launch: Launch) -> list[Finding]:
    """A finding for each choice the plugin changes, and for each that cannot serve this GPU well."""
    out = []
    for row in backend_rows(spec, desc, launch):
        you = f"you passed {row.flag} {row.sglang}; " if _passed(launch, row.flag) else ""
        fix = f"pass {row.flag} {row.fix}" if row.fix else f"leave {row.flag} to SGLang"
        if row.runs is False:
            out.append(
                Finding(FAIL, AREA, f"{row.role}: {row.plugin} cannot run here ({row.note}); {you}{fix}")
            )
        elif row.plugin != row.sglang:
            out.append(
                Finding(
                    INFO,
                    AREA,
                    f"{row.role}: SGLang alone picks {row.sglang}, which has no kernels for {spec.arch_name} "
                    f"({why_no_kernels(spec, row.sglang, mla=desc.attention.is_mla)}) and stops at startup; "
                    f"the plugin picks {row.plugin} ({row.flag} overrides it)",
                )
            )
        elif row.changed:
            out.append(Finding(INFO, AREA, f"{row.role}: {row.note}"))
        elif row.upcast:
            out.append(
                Finding(RISK, AREA, f"{row.role}: {row.note}; the memory figures here count them as MXFP4")
            )
    return out
