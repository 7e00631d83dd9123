"""Backends: which attention backend and MXFP4 MoE path SGLang picks for a GPU, and where the plugin changes it.

Not a family of Triton tiles but of SGLang's selection code: the per-model attention defaults
and the deterministic-inference default that land a consumer GPU on a backend without kernels
for it, and the MXFP4 Marlin gate that refuses sm_80-sm_89. The decisions are
:mod:`sglang_consumer_gpu.backends` (pure functions of a GpuSpec); the SGLang seams are those of
:mod:`~sglang_consumer_gpu.patches.backend_model_attention`,
:mod:`~sglang_consumer_gpu.patches.backend_deterministic_attention` and
:mod:`~sglang_consumer_gpu.patches.mxfp4_marlin_gate`. docs/backends.md lists every capability
check of SGLang 0.5.23 and what the plugin does about each.

``doctor --model`` gets a Backends section: the attention backends of SGLang's own resolution,
alone and, where SGLang alone's choice has no kernels for the GPU, again with the plugin's
patches (:meth:`BackendsFamily.launch_facts`); the MoE runner for MXFP4 experts from the same
resolution and :func:`~sglang_consumer_gpu.backends.mxfp4_moe_path`. A backend with no kernels
for the GPU is a WILL FAIL (SGLang stops at startup or after loading the weights) with the flag
that avoids it as the finding's fix; a choice the plugin changes is a note saying what SGLang
alone would do.

Nothing here compiles a kernel, so the family has no ``check`` area; nothing runs a kernel of
its own, so no ``selftest`` rows.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sglang_consumer_gpu.backends import (
    FALLBACK,
    attention_runs,
    mxfp4_moe_path,
    steer_attention,
    why_no_kernels,
)
from sglang_consumer_gpu.families.base import FAIL, INFO, RISK, Family, Finding, Section
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.models.launch import Launch
from sglang_consumer_gpu.patches import (
    backend_deterministic_attention,
    backend_model_attention,
    mxfp4_marlin_gate,
)

NAME = "backends"
TITLE = "Backends (SGLang's choice -> the plugin's, where they differ)"
_PATCHES = (backend_model_attention.PATCH, backend_deterministic_attention.PATCH, *mxfp4_marlin_gate.PATCHES)


@dataclass(frozen=True)
class Resolved:
    """The backends of a resolved launch, each a (prefill, decode) pair ("" where the model has
    no such layers): attention with the plugin (what runs) and by SGLang alone, and the kernels of
    a hybrid model's linear-attention layers."""

    attention: tuple[str, str]
    sglang_attention: tuple[str, str]
    linear_attention: tuple[str, str] = ("", "")


def _attention(overrides: Any, server_args: Any) -> tuple[str, str]:
    prefill, decode = overrides.attention_backends_of(overrides.resolving_view(server_args))
    return str(prefill or ""), str(decode or "")


def _linear_attention(overrides: Any, server_args: Any) -> tuple[str, str]:
    hybrid = importlib.import_module(backend_model_attention.HYBRID_ARCH.module)
    model = overrides.model_config_of(server_args)
    if hybrid.hybrid_gdn_config(model) is None and hybrid.hybrid_kda_config(model) is None:
        return "", ""
    cfg = overrides.resolving_view(server_args)
    base = str(cfg.linear_attn_backend or "")
    return str(cfg.linear_attn_prefill_backend or base), str(cfg.linear_attn_decode_backend or base)


def resolved(spec: GpuSpec, alone: Any, with_plugin: Callable[[], Any]) -> Resolved:
    """The backends of SGLang's resolution ``alone``; the attention backends with the plugin are
    resolved again, patched, only where one of SGLang's has no kernels for ``spec`` (elsewhere the
    patches change nothing)."""
    overrides = importlib.import_module(backend_model_attention.MODULE)
    theirs = _attention(overrides, alone)
    mla = bool(overrides.use_mla_backend(alone))
    mine = theirs
    if any(steer_attention(spec, b, mla=mla) for b in theirs if b):
        mine = _attention(overrides, with_plugin())
    return Resolved(mine, theirs, _linear_attention(overrides, alone))


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


def _attention_rows(spec: GpuSpec, desc: ModelDescription, choices: Resolved) -> list[BackendRow]:
    mla = desc.attention.is_mla
    plugin, alone = choices.attention, choices.sglang_attention
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


def backend_rows(spec: GpuSpec, desc: ModelDescription, launch: Launch, choices: Resolved) -> list[BackendRow]:
    """The launch's attention, linear-attention and MoE-runner choices on ``spec``."""
    rows = _attention_rows(spec, desc, choices)
    prefill, decode = choices.linear_attention
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


def backend_findings(
    spec: GpuSpec, desc: ModelDescription, launch: Launch, rows: list[BackendRow]
) -> list[Finding]:
    """A finding for each choice the plugin changes, and for each that cannot serve this GPU well
    (with the flag that would, as its fix)."""
    out = []
    for row in rows:
        you = f"you passed {row.flag} {row.sglang}; " if _passed(launch, row.flag) else ""
        fix = (row.flag, row.fix) if row.fix else None
        if row.runs is False:
            todo = f"pass {row.flag} {row.fix}" if row.fix else f"leave {row.flag} to SGLang"
            text = f"{row.role}: {row.plugin} cannot run here ({row.note}); {you}{todo}"
            out.append(Finding(FAIL, NAME, text, fix))
        elif row.plugin != row.sglang:
            why = why_no_kernels(spec, row.sglang, mla=desc.attention.is_mla)
            text = (
                f"{row.role}: SGLang alone picks {row.sglang}, which has no kernels for {spec.arch_name} "
                f"({why}) and stops at startup; the plugin picks {row.plugin} ({row.flag} overrides it)"
            )
            out.append(Finding(INFO, NAME, text))
        elif row.changed:
            out.append(Finding(INFO, NAME, f"{row.role}: {row.note}"))
        elif row.upcast:
            text = f"{row.role}: {row.note}; the memory figures here count them as MXFP4"
            out.append(Finding(RISK, NAME, text, fix))
    return out


@dataclass(frozen=True)
class BackendsFamily(Family):
    """SGLang's backend choices (see the module docstring)."""

    name: str = NAME
    patch_modules: tuple[Any, ...] = (backend_model_attention, backend_deterministic_attention, mxfp4_marlin_gate)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return any(p.needed_on(spec) for p in _PATCHES)

    def launch_facts(self, spec: GpuSpec, alone: Any, with_plugin: Callable[[], Any]) -> Resolved:
        return resolved(spec, alone, with_plugin)

    def planner_section(self, spec: GpuSpec, desc: Any, launch: Any) -> Section | None:
        choices = launch.facts.get(self.name)
        rows = backend_rows(spec, desc, launch, choices) if choices is not None else []
        if not rows:
            return None
        return Section(
            self.name,
            TITLE,
            tuple(r.line(spec) for r in rows),
            tuple(r.to_dict() for r in rows),
            tuple(backend_findings(spec, desc, launch, rows)),
        )


FAMILY = BackendsFamily()
