"""Environment variables the plugin reads, in one place so `doctor` can list them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The off switch: one of OFF_VALUES turns every patch off (both activation paths).
OFF_SWITCH = "SGLANG_CONSUMER_GPU"
#: Compute every decision for this GPU (a catalog name) instead of the live one.
VIRTUAL_GPU = "SGLANG_CONSUMER_GPU_VIRTUAL"
#: Directory of fused-MoE configs tuned on this machine (SGLang's JSON format).
USER_MOE_CONFIG_DIR = "SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR"
#: Comma-separated extra patch modules (each defines PATCH or PATCHES), loaded
#: after the built-in ones: for site-specific patches and for fault-injection tests.
EXTRA_PATCH_MODULES = "SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES"
#: Where compile results of the shared-memory oracle are cached.
CACHE_DIR = "SGLANG_CONSUMER_GPU_CACHE_DIR"
#: 0/false/off: the tools ask SGLang again instead of answering from their cache of SGLang's
#: answers (sglang_consumer_gpu.oracle.answers).
ANSWER_CACHE = "SGLANG_CONSUMER_GPU_ANSWER_CACHE"
#: Shared memory per block (bytes) that Triton, torch and the plugin's live spec
#: report instead of the GPU's own, in every process: emulates a smaller GPU's
#: limit on a bigger one (sglang_consumer_gpu.emulation, docs/e2e.md). A contract
#: the tools and scripts share: do not rename.
EMULATE_SMEM = "SGLANG_CONSUMER_GPU_EMULATE_SMEM"
#: A catalog GPU to emulate arch-faithfully on this one, in every process: Triton
#: generates that GPU's code (``TRITON_OVERRIDE_ARCH``), launches are checked against
#: its shared memory per block and padded to its residency per SM, and torch, SGLang
#: and the plugin see its name, capability and SM count (sglang_consumer_gpu.emulation,
#: docs/emulation.md). Wins over EMULATE_SMEM. A contract the tools and scripts share.
EMULATE_GPU = "SGLANG_CONSUMER_GPU_EMULATE_GPU"

#: Accepted values, compared after stripping spaces and lower-casing. Unset means on.
#: Anything else (including an empty value) leaves the plugin on and logs one warning.
OFF_VALUES = ("0", "false", "no", "off")
ON_VALUES = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Switch:
    """What ``SGLANG_CONSUMER_GPU`` says."""

    enabled: bool
    raw: str | None  # the value as set (None: unset)
    recognised: bool  # False: not one of OFF_VALUES/ON_VALUES (the plugin stays on)

    def describe(self) -> str:
        """For log lines: the real value, e.g. ``SGLANG_CONSUMER_GPU='off'``."""
        return f"{OFF_SWITCH} unset" if self.raw is None else f"{OFF_SWITCH}={self.raw!r}"

    def warning(self) -> str:
        """The one-line warning for an unrecognised value ("" when recognised)."""
        if self.recognised:
            return ""
        return (
            f"{self.describe()} is not a recognised value, so the plugin stays ON; "
            f"use one of {'/'.join(OFF_VALUES)} to switch it off, {'/'.join(ON_VALUES)} (or unset) for on"
        )


def switch() -> Switch:
    raw = os.environ.get(OFF_SWITCH)
    if raw is None:
        return Switch(True, None, True)
    value = raw.strip().lower()
    if value in OFF_VALUES:
        return Switch(False, raw, True)
    return Switch(True, raw, value in ON_VALUES)


def plugin_enabled() -> bool:
    return switch().enabled


_warned_smem: set[str] = set()


def emulated_smem_cap(environ: dict[str, str] | None = None) -> int | None:
    """The emulated cap in bytes, or None when unset or invalid (an invalid value
    is logged once per process and ignored: no cap is better than a wrong one)."""
    raw = (os.environ if environ is None else environ).get(EMULATE_SMEM)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value > 0:
        return value
    if raw not in _warned_smem:
        _warned_smem.add(raw)
        import logging

        logging.getLogger("sglang_consumer_gpu.emulation").warning(
            "sglang-consumer-gpu: %s=%r ignored (want a positive number of bytes, e.g. 101376); "
            "no shared-memory cap is emulated",
            EMULATE_SMEM,
            raw,
        )
    return None


def emulated_gpu_name(environ: dict[str, str] | None = None) -> str | None:
    """The catalog name ``SGLANG_CONSUMER_GPU_EMULATE_GPU`` holds, or None when unset or blank."""
    raw = (os.environ if environ is None else environ).get(EMULATE_GPU)
    return raw.strip() if raw and raw.strip() else None


def extra_patch_modules() -> list[str]:
    return [m.strip() for m in os.environ.get(EXTRA_PATCH_MODULES, "").split(",") if m.strip()]


def cache_root() -> Path:
    """The plugin's cache directory (XDG cache dir unless overridden)."""
    explicit = os.environ.get(CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sglang-consumer-gpu"


def user_moe_config_dir() -> Path:
    explicit = os.environ.get(USER_MOE_CONFIG_DIR)
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "moe_configs"
