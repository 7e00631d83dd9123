"""``doctor``'s "Builds for <GPU>" section: which architectures the installed
torch, sgl-kernel, Triton and FlashInfer carry or can build, whether the GPU
the decisions are made for can run them, and what to change when not
(:mod:`sglang_consumer_gpu.builds`). Kept apart from the patch report so each
changes on its own.
"""

from __future__ import annotations

from typing import Any

from sglang_consumer_gpu.builds import report
from sglang_consumer_gpu.hardware import GpuSpec


def collect(gpu: GpuSpec | None) -> dict[str, Any]:
    """The section as data; a reader that fails (a bug, never a bad file: those are items) is a line, not a crash."""
    try:
        return report.collect(gpu).to_dict()
    except Exception as exc:
        return {
            "gpu": gpu.name if gpu else None,
            "arch": gpu.arch_name if gpu else None,
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "packages": [],
        }


def print_section(data: dict[str, Any]) -> None:
    if data["gpu"]:
        print(f"Builds for {data['gpu']} ({data['arch']}), read from the installed binaries:")
    else:
        print("Builds (no GPU to judge them for: what each binary carries; --gpu NAME judges them):")
    if "error" in data:
        print(f"  could not be read: {data['error']}. Please report this with `doctor --json` output.")
        return
    width = max((len(i["status"]) for p in data["packages"] for i in p["items"]), default=0)
    fixes = []
    for pkg in data["packages"]:
        version = "not installed" if pkg["version"] is None else pkg["version"]
        print("  " + " ".join(p for p in (pkg["name"], version, pkg["note"]) if p))
        for item in pkg["items"]:
            print(f"    {item['status']:<{width}}  {item['subject']}: {item['detail']}")
            if item.get("fix"):
                fixes.append(f"{pkg['name']}, {item['subject']}: {item['fix']}")
    if fixes:
        print("  What to change:")
        for fix in fixes:
            print(f"    - {fix}")
