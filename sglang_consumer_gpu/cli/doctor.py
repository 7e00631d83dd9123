"""`doctor`: what GPU this is, what SGLang stack is installed, whether the plugin
is active and by which path, and what each patch did."""

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
from sglang_consumer_gpu.hardware import GpuSpec, find_gpu, live_specs, override_spec
from sglang_consumer_gpu.versions import report as version_report

PTH_NAME = "sglang_consumer_gpu.pth"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="report GPU, versions, activation and patch status", allow_abbrev=False)
    p.add_argument(
        "--gpu", metavar="NAME", help='answer for a GPU that is not present, e.g. "NVIDIA GeForce RTX 4090"'
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
    from sglang_consumer_gpu.patches import watcher

    return {
        # The .pth imports this module at interpreter start; if it is loaded, the .pth ran.
        "pth_ran_in_this_process": "sglang_consumer_gpu._pth" in sys.modules,
        "enabled": settings.plugin_enabled(),
        "off_switch": f"{settings.OFF_SWITCH}=0",
        "pth_files": _pth_locations(),
        "import_watcher_installed": watcher.installed(),
        "entry_point_registered": _entry_point_registered(),
        "paths_run_in_this_process": activation.active_paths(),
    }


def collect(gpu: GpuSpec | None) -> dict[str, Any]:
    """Everything doctor reports, as data. Importing the patch targets is what
    doctor is for, so this imports SGLang (several seconds)."""
    from sglang_consumer_gpu import activation
    from sglang_consumer_gpu.patches import registry

    live = live_specs()
    target = gpu if gpu is not None else (min(live, key=lambda s: s.smem_per_block_optin) if live else None)
    out: dict[str, Any] = {
        "plugin_version": __version__,
        "python": sys.version.split()[0],
        "versions": version_report(),
        "live_gpus": [s.to_dict() for s in live],
        "gpu": target.to_dict() if target else None,
        "gpu_is_virtual": gpu is not None,
        "env": {
            k: os.environ[k]
            for k in (
                settings.OFF_SWITCH,
                settings.VIRTUAL_GPU,
                settings.USER_MOE_CONFIG_DIR,
                settings.CACHE_DIR,
                "SGLANG_MOE_CONFIG_DIR",
            )
            if k in os.environ
        },
    }
    if target is not None:
        with override_spec(target):
            activation.activate(path="doctor")
            results = registry.apply_all()
    else:
        activation.activate(path="doctor")
        results = registry.apply_all()
    out["activation"] = activation_report()
    out["patches"] = {
        p.name: {"target": p.target, "why": p.why, **results[p.name].to_dict()} for p in registry.patches()
    }
    return out


def _advice(data: dict[str, Any]) -> list[str]:
    tips = []
    act = data["activation"]
    if not act["enabled"]:
        tips.append(f"The plugin is switched off ({act['off_switch']} is set): unset it to patch SGLang.")
    if not act["pth_files"]:
        tips.append(
            "No sglang_consumer_gpu.pth in site-packages: reinstall with `pip install sglang-consumer-gpu` "
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
    if data["versions"].get("sglang") is None:
        tips.append("SGLang is not installed in this environment.")
    for name, p in data["patches"].items():
        if p["status"] in ("failed", "target missing"):
            tips.append(
                f"Patch {name} did not apply ({p['status']}: {p['detail']}); SGLang's own code runs for it. "
                "Please report this with `doctor --json` output."
            )
    return tips


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
    print()
    print("Versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in data["versions"].items()))
    act = data["activation"]
    print()
    print(f"Activation: {'enabled' if act['enabled'] else 'DISABLED (' + act['off_switch'] + ')'}")
    ran = "ran at interpreter start" if act["pth_ran_in_this_process"] else "did NOT run in this interpreter"
    print(f"  import watcher (.pth): {', '.join(act['pth_files']) or 'NOT INSTALLED'} - {ran}")
    print(
        f"  sglang.srt.plugins entry point: {'registered' if act['entry_point_registered'] else 'NOT REGISTERED'}"
    )
    print()
    print("Patches:")
    if not data["patches"]:
        print("  (none registered)")
    width = max((len(n) for n in data["patches"]), default=0)
    for name, p in data["patches"].items():
        print(f"  {name:<{width}}  {p['status']:<24} {p['detail']}")
        print(f"  {'':<{width}}  target {p['target']}: {p['why']}")
    tips = _advice(data)
    if tips:
        print()
        print("What to do:")
        for t in tips:
            print(f"  - {t}")


def run(args: argparse.Namespace) -> int:
    if args.model or getattr(args, "sglang_args", None):
        from sglang_consumer_gpu.cli import doctor_model

        return doctor_model.run(args)
    gpu = find_gpu(args.gpu) if args.gpu else None
    data = collect(gpu)
    if args.json:
        data["advice"] = _advice(data)
        print(json.dumps(data, indent=2))
    else:
        _print_human(data)
    return 0
