"""Installed versions, read from package metadata so nothing heavy is imported."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTIONS = ("sglang", "sgl-kernel", "sglang-kernel", "triton", "torch", "sglang-consumer-gpu")


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def report() -> dict[str, str | None]:
    return {d: installed_version(d) for d in DISTRIBUTIONS}
