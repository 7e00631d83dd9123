"""Installed versions, read from package metadata so nothing heavy is imported."""

from __future__ import annotations

from importlib import metadata

# sgl-kernel is published as "sglang-kernel" since SGLang 0.5.2x; either provides `sgl_kernel`.
DISTRIBUTIONS = {
    "sglang": ("sglang",),
    "sgl-kernel": ("sgl-kernel", "sglang-kernel"),
    "triton": ("triton",),
    "torch": ("torch",),
    "sglang-consumer-gpu": ("sglang-consumer-gpu",),
}


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def report() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for label, dists in DISTRIBUTIONS.items():
        out[label] = next((v for v in map(installed_version, dists) if v), None)
    return out
