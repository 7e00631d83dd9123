"""Installed versions, and which SGLang releases the plugin covers.

Versions are read from package metadata, so nothing heavy is imported (this
runs on the first ``import sglang`` and in ``doctor``).

"Covered" means: for every release in :data:`SGLANG_RELEASES` each patch
declares where its target lives (``patching.base.Seam``), and CI checks from
the release's own wheel, without importing it, that the target is there with
the signature the patch expects (``tests/test_sglang_versions.py``). Outside
that range the plugin patches nothing and says so once.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

# sgl-kernel is published as "sglang-kernel" since SGLang 0.5.2x; either provides `sgl_kernel`.
DISTRIBUTIONS = {
    "sglang": ("sglang",),
    "sgl-kernel": ("sgl-kernel", "sglang-kernel"),
    "triton": ("triton",),
    "torch": ("torch",),
    "sglang-consumer-gpu": ("sglang-consumer-gpu",),
}

#: Every SGLang release on PyPI from 0.4.9 to 0.5.23 (post releases included);
#: CI checks each one's wheel. A new release is covered once it is added here
#: and that test passes for it.
SGLANG_RELEASES: tuple[str, ...] = (
    *("0.4.9", *(f"0.4.9.post{i}" for i in range(1, 7))),
    *("0.4.10", "0.4.10.post1", "0.4.10.post2"),
    *("0.5.1", "0.5.1.post1", "0.5.1.post2", "0.5.1.post3", "0.5.2"),
    *("0.5.3", "0.5.3.post1", "0.5.3.post2", "0.5.3.post3"),
    *("0.5.4", "0.5.4.post1", "0.5.4.post2", "0.5.4.post3"),
    *("0.5.5", "0.5.5.post1", "0.5.5.post2", "0.5.5.post3"),
    *("0.5.6", "0.5.6.post1", "0.5.6.post2", "0.5.7", "0.5.8", "0.5.8.post1", "0.5.9"),
    *("0.5.10", "0.5.10.post1", "0.5.11", "0.5.12", "0.5.12.post1", "0.5.13", "0.5.13.post1"),
    *("0.5.14", "0.5.15", "0.5.15.post1"),
    *("0.5.16", "0.5.17", "0.5.18", "0.5.19", "0.5.20", "0.5.21", "0.5.22", "0.5.23"),
)
#: The release the tests import and every measured number was taken with (constraints.txt).
PINNED_SGLANG = "0.5.23"
#: SGLang calls ``sglang.srt.plugins`` entry points from this release on; before it only the .pth activates.
PLUGIN_GROUP_SINCE = "0.5.11"
#: The first release of each part of the plugin; every part's range ends at the newest covered
#: release. ``runtime``: the patches. ``check``: the compile-only oracle imports SGLang's kernels by
#: their 0.5.20+ module paths. ``selftest``: the live engine drives SGLang's ``sglang.kernels.ops``
#: modules (0.5.16+).
FIRST_RELEASE: dict[str, str] = {"runtime": SGLANG_RELEASES[0], "check": "0.5.20", "selftest": "0.5.16"}


def sglang_range(area: str) -> str:
    """The SGLang releases ``area`` (a key of :data:`FIRST_RELEASE`) covers, as a specifier
    (a pre-release or local build of a covered release counts)."""
    return f">={FIRST_RELEASE[area]},<={SGLANG_RELEASES[-1]}"


COVERED_SGLANG = sglang_range("runtime")
CHECK_SGLANG = sglang_range("check")
SELFTEST_SGLANG = sglang_range("selftest")


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


def package_dirs(name: str) -> list[Path]:
    """Where the installed top-level package ``name`` lives, found without importing it.

    ``importlib.util.find_spec`` would do, but it asks every finder on
    ``sys.meta_path``, including the plugin's own first-import trigger, which
    would then activate the plugin in a process that only wanted to read files
    (doctor, moe-config). So the same finders are asked, minus the plugin's."""
    for finder in sys.meta_path:
        if type(finder).__module__.startswith("sglang_consumer_gpu") or not hasattr(finder, "find_spec"):
            continue
        try:
            spec = finder.find_spec(name, None)
        except Exception:
            continue
        if spec is not None:
            return [Path(p) for p in spec.submodule_search_locations or ()]
    return []


def sglang_package_dirs() -> list[Path]:
    """Where the installed ``sglang`` package lives (see :func:`package_dirs`)."""
    return package_dirs("sglang")


@functools.lru_cache(maxsize=1)
def sglang_version() -> str | None:
    """The installed SGLang's version (read once per process: it does not change under a running SGLang)."""
    return installed_version("sglang")


def in_range(version: str, specifier: str) -> bool:
    """``version`` in ``specifier``, judged by its public part (``0.5.20+cu128`` is 0.5.20)."""
    try:
        return Version(Version(version).public) in SpecifierSet(specifier, prereleases=True)
    except InvalidVersion:
        return False


def has_plugin_group(version: str | None = None) -> bool:
    """Whether that SGLang (default: the installed one) runs ``sglang.srt.plugins`` entry points."""
    version = version if version is not None else sglang_version()
    return version is not None and in_range(version, f">={PLUGIN_GROUP_SINCE}")


@dataclass(frozen=True)
class Coverage:
    """Whether the installed SGLang is one the plugin covers, and what to tell the user if not."""

    version: str | None
    covered: bool
    message: str  # "" when covered
    advice: str  # what to do, "" when covered


def coverage(area: str = "runtime", version: str | None = None) -> Coverage:
    """Coverage of ``version`` (default: the installed SGLang) for the patches
    (``area="runtime"``) or for ``check``'s compile-only oracle (``area="check"``)."""
    version = version if version is not None else sglang_version()
    spec = sglang_range("check" if area == "check" else "runtime")
    what = "`check` (its compile-only oracle)" if area == "check" else "sglang-consumer-gpu"
    first, last = (s.lstrip("<>=") for s in spec.split(","))
    if version is None:
        return Coverage(None, False, "SGLang is not installed", f"install SGLang {first} to {last}")
    if in_range(version, spec):
        return Coverage(version, True, "", "")
    message = f"SGLang {version} is not covered by {what}, which covers SGLang {first} to {last}; " + (
        "nothing is checked" if area == "check" else "SGLang runs unpatched"
    )
    advice = (
        f"install a covered SGLang (pip install 'sglang>={first},<={last}'), or a newer "
        "sglang-consumer-gpu that covers this SGLang"
        if area == "runtime"
        else f"run check in an environment with SGLang {first} to {last} (the pinned {PINNED_SGLANG} is "
        "what every number was measured with); the runtime patches cover "
        f"{SGLANG_RELEASES[0]} to {SGLANG_RELEASES[-1]}"
    )
    return Coverage(version, False, message, advice)
