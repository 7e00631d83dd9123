"""`doctor`: what GPU this is, what SGLang stack is installed, whether the plugin
is active and by which path, and what each patch will do.

By default it answers from the installed files, without importing SGLang
(which takes ~10 s): each patch's seam for the installed release is checked in
SGLang's source with :mod:`ast` (:mod:`sglang_consumer_gpu.patching.static`),
and the decision is the same pure function of the GPU spec the patch makes at
run time. Patches are applied lazily inside SGLang's own processes, so what a
separate ``doctor`` process can report is what they *will* do there.
``--import`` also imports every target and applies the patches in this
process, the slow proof that they do.
"""

from __future__ import annotations

import argparse
import json
import os
import site
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import __version__, settings
from sglang_consumer_gpu.cli import doctor_builds, doctor_multigpu
from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.hardware import GpuSpec, find_gpu, live_specs, override_spec
from sglang_consumer_gpu.patching.base import Patch, Seam, Status
from sglang_consumer_gpu.patching.decide import READY, Decision, decide
from sglang_consumer_gpu.safety import state as safety_state
from sglang_consumer_gpu.versions import PLUGIN_GROUP_SINCE, coverage, has_plugin_group, sglang_version
from sglang_consumer_gpu.versions import report as version_report

PTH_NAME = "sglang_consumer_gpu.pth"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="report GPU, versions, activation and patch status", allow_abbrev=False)
    p.add_argument(
        "--gpu", metavar="NAME", help='answer for a GPU that is not present, e.g. "NVIDIA GeForce RTX 4090"'
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--import",
        dest="do_import",
        action="store_true",
        help="also import SGLang and apply every patch in this process (slow, ~10 s)",
    )
    from sglang_consumer_gpu.cli import doctor_model

    doctor_model.add_arguments(p)
    p.set_defaults(func=run, accepts_sglang_args=True)


def _pth_locations() -> list[str]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return [str(Path(d) / PTH_NAME) for d in dirs if (Path(d) / PTH_NAME).is_file()]


def _entry_point_registered() -> bool:
    eps = metadata.entry_points(group="sglang.srt.plugins")
    return any(ep.value.startswith("sglang_consumer_gpu.") for ep in eps)


def activation_report() -> dict[str, Any]:
    from sglang_consumer_gpu import activation
    from sglang_consumer_gpu.patching import watcher

    sw = settings.switch()
    version = sglang_version()
    return {
        # The .pth imports this module at interpreter start; if it is loaded, the .pth ran.
        "pth_ran_in_this_process": "sglang_consumer_gpu._pth" in sys.modules,
        "enabled": sw.enabled,
        "switch": sw.describe(),
        "switch_recognised": sw.recognised,
        "off_values": list(settings.OFF_VALUES),
        "pth_files": _pth_locations(),
        "import_watcher_installed": watcher.installed(),
        "entry_point_registered": _entry_point_registered(),
        # SGLang calls entry points of the group only from 0.5.11 on.
        "sglang_has_plugin_group": has_plugin_group(version),
        "paths_run_in_this_process": activation.active_paths(),
    }


class _Source:
    """The probe of :func:`~sglang_consumer_gpu.patching.decide.decide` for SGLang's installed
    source files (no import)."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self.condition = ""

    def target(self, patch: Patch, seam: Seam) -> Decision | None:
        from sglang_consumer_gpu.patching.static import check_seam

        check = check_seam(seam, self.read)
        if not check.ok:
            return Decision(Status.TARGET_MISSING if check.missing else Status.TARGET_CHANGED, check.problem)
        self.condition = check.condition
        return None

    def upstream_fixed(self, patch: Patch, seam: Seam, spec: GpuSpec) -> str | None:
        from sglang_consumer_gpu.patching.static import read_source

        if patch.upstream_fixed_from_source is None:
            return None
        source = read_source(self.read, seam.module)
        with override_spec(spec):
            fixed = patch.upstream_fixed_from_source(spec, source) if source is not None else None
        if not fixed:
            return None
        return f"SGLang {sglang_version()}'s own choice already fits {spec.name} ({spec.arch_name})"


def patch_status(patch: Patch, spec: GpuSpec | None, read: Any) -> dict[str, str]:
    """What ``patch`` will do in SGLang's processes, from the installed source alone."""
    sw = settings.switch()
    if not sw.enabled:
        return {"status": Status.DISABLED.value, "detail": f"disabled by {sw.describe()}"}
    probe = _Source(read)
    decision = decide(patch, spec, probe)
    if decision.status is not READY or spec is None:
        return {"status": decision.status.value, "detail": decision.detail}
    seam = patch.current_seam()
    where = f"when {seam.module if seam else patch.target} is imported"
    if probe.condition and seam is not None:
        where += f" (SGLang defines {seam.attr} only under `if {probe.condition}:`, i.e. with CUDA present)"
    return {"status": READY.value, "detail": f"for {spec.name} ({spec.arch_name}) {where}{decision.detail}"}


def in_family_order(patches: list[Patch]) -> list[Patch]:
    """``patches`` as the families list them (fused MoE, attention, int8, the safety net), then
    any extra patch module's, in their order."""
    from sglang_consumer_gpu.families import FAMILIES

    order = {
        p.name: i
        for i, p in enumerate(
            p for f in FAMILIES for m in f.patch_modules for p in getattr(m, "PATCHES", None) or [m.PATCH]
        )
    }
    return sorted(patches, key=lambda p: order.get(p.name, len(order)))


def collect(gpu: GpuSpec | None, do_import: bool = False) -> dict[str, Any]:
    """Everything doctor reports, as data (``do_import``: also import SGLang and apply)."""
    from sglang_consumer_gpu.patching.catalog import builtin_patches
    from sglang_consumer_gpu.patching.static import installed_reader

    live = live_specs()
    target = gpu if gpu is not None else (min(live, key=lambda s: s.smem_per_block_optin) if live else None)
    cov = coverage()
    out: dict[str, Any] = {
        "plugin_version": __version__,
        "python": sys.version.split()[0],
        "versions": version_report(),
        "sglang_coverage": {"covered": cov.covered, "message": cov.message, "advice": cov.advice},
        "live_gpus": [s.to_dict() for s in live],
        "gpu": target.to_dict() if target else None,
        "gpu_is_virtual": gpu is not None,
        "env": {
            k: os.environ[k]
            for k in (
                settings.OFF_SWITCH,
                settings.VIRTUAL_GPU,
                settings.EMULATE_GPU,
                settings.EMULATE_SMEM,
                settings.USER_MOE_CONFIG_DIR,
                settings.CACHE_DIR,
                settings.ANSWER_CACHE,
                "SGLANG_MOE_CONFIG_DIR",
            )
            if k in os.environ
        },
        "mode": "import" if do_import else "static",
        "emulation": emulation_report(),
    }
    patches = in_family_order(builtin_patches())
    read = installed_reader() or (lambda rel: None)
    out["patches"] = {
        p.name: {
            "target": p.target,
            "why": p.why,
            "sglang_releases": p.coverage_text(),
            **patch_status(p, target, read),
        }
        for p in patches
    }
    if do_import:
        out["patches_in_this_process"] = _import_and_apply(target)
    out["activation"] = activation_report()
    out["safety_net"] = safety_state.report()
    out["multi_gpu"] = doctor_multigpu.report()
    out["builds"] = doctor_builds.collect(target)
    out["moe_name_variants"] = moe_family.variant_files(target) if target else []
    return out


def emulation_report() -> dict[str, Any] | None:
    """What this process emulates (``emulate``, docs/emulation.md), and what it does not; None: nothing."""
    from sglang_consumer_gpu.emulation import smem_cap
    from sglang_consumer_gpu.hardware.current import active_emulation

    emulation = active_emulation()
    if emulation is not None:
        return {
            "mode": "arch-faithful",
            "target": emulation.target.name,
            "host": emulation.host.name,
            "triton_override_arch": os.environ.get("TRITON_OVERRIDE_ARCH", emulation.override_arch),
            "line": emulation.describe(),
            "not_emulated": emulation.not_emulated(),
        }
    if settings.emulated_gpu_name() is not None:
        return {"mode": "refused", "line": f"{settings.EMULATE_GPU} is set but nothing is emulated (see the warning)"}
    cap = smem_cap()
    if cap is not None:
        return {"mode": "limit only", "line": f"shared-memory limit {cap:,} B per block; kernels are the host's code"}
    return None


def _import_and_apply(target: GpuSpec | None) -> dict[str, Any]:
    from sglang_consumer_gpu import activation
    from sglang_consumer_gpu.patching import registry

    print(
        "doctor: importing SGLang's patch targets and applying the patches here (about 10 s)...",
        file=sys.stderr,
    )
    sw = settings.switch()
    reason = None if sw.enabled else f"disabled by {sw.describe()}"
    if target is not None:
        with override_spec(target):
            activation.activate(path="doctor")
            results = registry.apply_all(disabled_reason=reason)
    else:
        activation.activate(path="doctor")
        results = registry.apply_all(disabled_reason=reason)
    return {
        p.name: {"target": p.target, **results[p.name].to_dict()} for p in in_family_order(registry.patches())
    }


def _advice(data: dict[str, Any]) -> list[str]:
    tips = []
    act = data["activation"]
    cov = data["sglang_coverage"]
    if not act["switch_recognised"]:
        tips.append(settings.switch().warning() + ".")
    if not act["enabled"]:
        tips.append(f"The plugin is switched off ({act['switch']}): unset it to patch SGLang.")
    if data["versions"].get("sglang") is None:
        tips.append(
            "SGLang is not installed in this environment: install it, then the plugin activates itself."
        )
    elif not cov["covered"]:
        tips.append(f"{cov['message']}. What to do: {cov['advice']}.")
    if not act["pth_files"]:
        tips.append(
            "No sglang_consumer_gpu.pth in site-packages: reinstall the plugin (pip install .) "
            "so patches also apply before SGLang's load_plugins() runs."
        )
    if not act["entry_point_registered"]:
        tips.append(
            "The sglang.srt.plugins entry point is not registered: the package metadata is missing; reinstall."
        )
    if data["gpu"] is None:
        tips.append(
            "No NVIDIA GPU visible: nothing is patched. Use --gpu NAME to see what would happen on a GPU."
        )
    statuses = [(n, p) for n, p in data["patches"].items()]
    statuses += [(n, p) for n, p in data.get("patches_in_this_process", {}).items()]
    for name, p in statuses:
        if p["status"] in ("failed", "target missing", "target changed") and cov["covered"]:
            tips.append(
                f"Patch {name} cannot apply ({p['status']}: {p['detail']}); SGLang's own code runs for it. "
                "Please report this with `doctor --json` output."
            )
    return tips


def _entry_point_line(act: dict[str, Any], version: str | None) -> str:
    if not act["entry_point_registered"]:
        return "NOT REGISTERED"
    if version is not None and not act["sglang_has_plugin_group"]:
        return (
            f"registered, but SGLang {version} has no plugin group (it appeared in {PLUGIN_GROUP_SINCE}); "
            "the import watcher alone activates the plugin"
        )
    return "registered"


def _print_patches(title: str, patches: dict[str, Any]) -> None:
    print(title)
    if not patches:
        print("  (none registered)")
    width = max((len(n) for n in patches), default=0)
    for name, p in patches.items():
        print(f"  {name:<{width}}  {p['status']:<24} {p['detail']}")
        if "why" in p:
            print(f"  {'':<{width}}  target {p['target']}: {p['why']}")
        if p.get("fallbacks"):
            print(
                f"  {'':<{width}}  {p['fallbacks']} call(s) answered by SGLang after an error: {p['last_error']}"
            )


def _print_human(data: dict[str, Any]) -> None:
    gpu = data["gpu"]
    print(f"sglang-consumer-gpu {data['plugin_version']} (python {data['python']})")
    print()
    if gpu is None:
        print(
            "GPU: none visible (no NVIDIA driver/GPU found). Decisions below are for no GPU: nothing is patched."
        )
    else:
        tag = "virtual, from --gpu" if data["gpu_is_virtual"] else "live"
        print(f"GPU ({tag}): {gpu['name']}")
        print(
            f"  compute capability {gpu['capability'][0]}.{gpu['capability'][1]} ({gpu['arch']}), "
            f"shared memory per block (opt-in) {gpu['smem_per_block_optin']} bytes, {gpu['sm_count']} SMs, "
            f"{gpu['memory_bytes'] / 1024**3:.0f} GiB, {gpu['memory_bandwidth_gbps']:.0f} GB/s"
        )
    if data["live_gpus"] and data["gpu_is_virtual"]:
        print("  live GPUs: " + ", ".join(g["name"] for g in data["live_gpus"]))
    if data["emulation"]:
        print(f"  Emulation ({data['emulation']['mode']}): {data['emulation']['line']}")
    print()
    for line in doctor_multigpu.lines(data["multi_gpu"]):
        print(line)
    print()
    print("Versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in data["versions"].items()))
    cov = data["sglang_coverage"]
    print(f"  SGLang: {'covered' if cov['covered'] else 'NOT COVERED: ' + cov['message']}")
    act = data["activation"]
    print()
    print(f"Activation: {'enabled' if act['enabled'] else 'DISABLED'} ({act['switch']})")
    ran = "ran at interpreter start" if act["pth_ran_in_this_process"] else "did NOT run in this interpreter"
    print(f"  import watcher (.pth): {', '.join(act['pth_files']) or 'NOT INSTALLED'} - {ran}")
    print(f"  sglang.srt.plugins entry point: {_entry_point_line(act, data['versions'].get('sglang'))}")
    print()
    _print_patches(
        "Patches (what they do in SGLang's processes, from the installed source):", data["patches"]
    )
    if "patches_in_this_process" in data:
        print()
        _print_patches("Patches applied in this process (--import):", data["patches_in_this_process"])
    if data["moe_name_variants"]:
        print()
        print("Fused-MoE files used under another name than theirs (SGLang asks for a name variant):")
        for line in data["moe_name_variants"]:
            print(f"  {line}")
    print()
    for line in safety_state.lines(data["safety_net"]):
        print(line)
    print()
    doctor_builds.print_section(data["builds"])
    tips = _advice(data)
    if tips:
        print()
        print("What to do:")
        for t in tips:
            print(f"  - {t}")


def run(args: argparse.Namespace) -> int:
    from sglang_consumer_gpu.cli import doctor_model

    if doctor_model.wants_model(args):
        return doctor_model.run(args)
    gpu = find_gpu(args.gpu) if args.gpu else None
    data = collect(gpu, do_import=args.do_import)
    if args.json:
        data["advice"] = _advice(data)
        print(json.dumps(data, indent=2))
    else:
        _print_human(data)
    return 0
