"""Every covered SGLang release, checked from its own wheel without installing it.

For each release in ``versions.SGLANG_RELEASES`` the wheel is fetched once
(``pip download --no-deps``, CPython 3.11 manylinux tags so every machine gets
the same file) and the few source files the patches target are kept under
``<plugin cache>/sglang-sources/<version>/`` with the wheel's file list; a
second run reads only that cache (no pip, no network). The wheel itself is
not kept (52 wheels are ~390 MB). Each patch's seam for the release is then
checked with :mod:`ast` (``patching.static``): the module and the target exist,
with the parameters the patch expects, called by name from the function the
patch relies on. The import-level tests on the pinned 0.5.23 are the rest of
the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.sources import SGLANG_CONFIG_DIRS
from sglang_consumer_gpu.patching.catalog import builtin_patches
from sglang_consumer_gpu.patching.static import check_seam, module_paths, read_source
from sglang_consumer_gpu.versions import (
    CHECK_SGLANG,
    COVERED_SGLANG,
    PINNED_SGLANG,
    PLUGIN_GROUP_SINCE,
    SGLANG_RELEASES,
    in_range,
)

TAGS = (
    "--only-binary=:all:",
    "--platform",
    "manylinux_2_34_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
)
PLUGINS = "sglang/srt/plugins/__init__.py"
ROOT = Path(__file__).resolve().parents[1]
#: Releases a patch has no seam in, and why (the README's covered-release table says the same).
NO_SEAM = {
    "attention-extend-blocks": "<0.5.4",  # tiles are locals of extend_attention_fwd before 0.5.4
    "fp8-weight-only-moe": "<0.5.16",  # the launcher lived in other modules, with other parameters
    # the arg_groups resolution pipeline (per-model providers, post-process passes) begins in
    # 0.5.15, before which these choices are inline in ServerArgs; the MXFP4 Marlin paths, and
    # their gates, begin in 0.5.12 (gpt-oss's method) and 0.5.14 (MXFP4 experts of FP8 checkpoints)
    "backend-model-attention": "<0.5.15",
    "backend-deterministic-attention": "<0.5.15",
    "mxfp4-marlin-gate": "<0.5.12",
    "mxfp4-marlin-gate-fp4-experts": "<0.5.14",
    # SGLang refuses cutlass MoE on sm_120 before 0.5.10; 0.5.10's Triton runner is in the old module
    "cutlass-moe-fp8": "<0.5.11",
}
#: The patches of SGLang's code; the Triton-level ones (the safety net) are checked against Triton below.
PATCHES = [p for p in builtin_patches() if not p.triton_only]
TRITON_PATCHES = [p for p in builtin_patches() if p.triton_only]


def _needed() -> set[str]:
    files = {PLUGINS}
    for patch in PATCHES:
        for seam in patch.all_seams():
            files.update(module_paths(seam.module))
    for _name, seam in _family_seams():  # what the patches call beside their targets
        files.update(module_paths(seam.module))
    return files


def _cache_root() -> Path:
    return settings.cache_root() / "sglang-sources"


def _fetch(version: str) -> Path:
    """The cached sources of one release (downloaded and extracted if missing)."""
    root = _cache_root() / version
    listing = root / "files.txt"
    needed = _needed()
    if listing.is_file():
        names = set(listing.read_text().split("\n"))
        if all((root / rel).is_file() for rel in needed & names):
            return root
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                *TAGS,
                "-d",
                tmp,
                f"sglang=={version}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(Path(tmp).glob("sglang-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"pip download sglang=={version} failed: {proc.stderr.strip()[-500:]}")
        staging = Path(tempfile.mkdtemp(dir=_cache_root(), prefix=f".{version}-"))
        with zipfile.ZipFile(wheels[0]) as zf:
            names = {n for n in zf.namelist() if n.startswith("sglang/")}
            for rel in needed & names:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_bytes(zf.read(rel))
        (staging / "files.txt").write_text("\n".join(sorted(names)))
        shutil.rmtree(root, ignore_errors=True)
        os.replace(staging, root)
    return root


@pytest.fixture(scope="session")
def releases() -> dict[str, Path]:
    """Cached sources of every covered release (4 downloads at a time when cold)."""
    _cache_root().mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {v: pool.submit(_fetch, v) for v in SGLANG_RELEASES}
    failed = {v: f.exception() for v, f in futures.items() if f.exception() is not None}
    if failed:
        pytest.fail(
            "could not fetch SGLang wheels (this test needs PyPI once; later runs use "
            f"{_cache_root()}): " + "; ".join(f"{v}: {e}" for v, e in failed.items())
        )
    return {v: f.result() for v, f in futures.items()}


def _reader(root: Path):
    names = set((root / "files.txt").read_text().split("\n"))

    def read(rel: str) -> str | None:
        return (root / rel).read_text(encoding="utf-8") if rel in names else None

    return read, names


def test_release_list_is_the_covered_range() -> None:
    parsed = [Version(v) for v in SGLANG_RELEASES]
    assert parsed == sorted(parsed) and len(set(parsed)) == len(parsed)
    assert all(in_range(v, COVERED_SGLANG) for v in SGLANG_RELEASES)
    assert PINNED_SGLANG in SGLANG_RELEASES and SGLANG_RELEASES[-1] == PINNED_SGLANG
    assert not in_range("0.4.8.post1", COVERED_SGLANG) and not in_range("0.5.23.post1", COVERED_SGLANG)


@pytest.mark.parametrize("version", SGLANG_RELEASES)
def test_every_patch_target_exists_as_the_patch_expects(releases, version) -> None:
    read, _ = _reader(releases[version])
    for patch in PATCHES:
        seam = patch.seam_for(version)
        if seam is None:
            assert patch.name in NO_SEAM and in_range(version, NO_SEAM[patch.name]), (patch.name, version)
            continue
        check = check_seam(seam, read)
        assert check.ok, f"SGLang {version}, patch {patch.name}: {check.problem}"


@pytest.mark.parametrize("version", SGLANG_RELEASES)
def test_every_gate_the_plugin_lifts_is_in_its_method(releases, version) -> None:
    """The MXFP4 Marlin gate patches rewrite one `raise` inside SGLang's method: in every
    release their seam covers, that method holds exactly one such gate, liftable."""
    from sglang_consumer_gpu.patches.mxfp4_marlin_gate import PATCHES as GATES
    from sglang_consumer_gpu.patches.mxfp4_marlin_gate import gate_in_source

    read, _ = _reader(releases[version])
    for patch in GATES:
        seam = patch.seam_for(version)
        if seam is None:
            continue
        source = read_source(read, seam.module)
        cls = seam.attr.split(".")[0]
        assert source is not None and gate_in_source(source, cls) == "", (version, patch.name)


@pytest.mark.parametrize("version", SGLANG_RELEASES)
def test_the_cutlass_route_target_takes_what_it_is_given(releases, version) -> None:
    """Where the cutlass-moe-fp8 patch has a seam, SGLang's Triton fused MoE it routes to exists and
    takes the keywords the replacement passes (``swiglu_limit`` where the CUTLASS function has it)."""
    import ast

    from sglang_consumer_gpu.patches import cutlass_moe_fp8 as route

    seam = route.PATCH.seam_for(version)
    if seam is None:
        return
    read, _ = _reader(releases[version])
    source = read_source(read, route.TRITON.module)
    assert source is not None, version
    tree = ast.parse(source)
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == route.TRITON.attr]
    names = {a.arg for a in (*fn.args.args, *fn.args.kwonlyargs)}
    wanted = {*route.TRITON_KEYWORDS, *(("swiglu_limit",) if "swiglu_limit" in (seam.params or ()) else ())}
    first = [a.arg for a in fn.args.args[:5]]
    assert first == ["hidden_states", "w1", "w2", "topk_weights", "topk_ids"], version
    assert wanted <= names, (version, wanted - names)


def test_triton_patch_targets_exist_in_the_installed_triton() -> None:
    """The safety net's targets are Triton's: they are checked in the installed Triton's source."""
    from sglang_consumer_gpu.patching.static import installed_reader

    read = installed_reader()
    assert TRITON_PATCHES and read is not None
    for patch in TRITON_PATCHES:
        for seam in patch.all_seams():
            check = check_seam(seam, read)
            assert check.ok, f"{patch.name}: {check.problem}"


def test_the_check_tells_seams_apart(releases) -> None:
    """The AST check is not a rubber stamp: in every release, a patch's seams for
    other releases (another module or signature) fail it."""
    rejected = 0
    for version, root in releases.items():
        read, _ = _reader(root)
        for patch in PATCHES:
            mine = patch.seam_for(version)
            for other in patch.all_seams():
                if mine is None or (other.module, other.params) == (mine.module, mine.params):
                    continue
                assert not check_seam(other, read).ok, (version, patch.name, other)
                rejected += 1
    assert rejected > 100


def test_plugin_group_exists_from_0_5_11(releases) -> None:
    """Before 0.5.11 SGLang has no `sglang.srt.plugins` group: only the .pth activates
    (doctor says so; the entry point is harmless metadata there)."""
    for version, root in releases.items():
        read, _ = _reader(root)
        source = read(PLUGINS)
        has_group = source is not None and '"sglang.srt.plugins"' in source and "def load_plugins" in source
        assert has_group == in_range(version, f">={PLUGIN_GROUP_SINCE}"), version


def test_sglang_moe_config_dir_is_known(releases) -> None:
    """`moe.sources` finds SGLang's own MoE config files in every covered release."""
    for version, root in releases.items():
        _, names = _reader(root)
        assert any(n.startswith(f"sglang/{d}/triton_") for d in SGLANG_CONFIG_DIRS for n in names), version


def test_doctor_static_verdict_works_on_every_release_with_the_extend_seam(releases) -> None:
    """doctor compiles SGLang's extend-attention tile helper from source alone; that
    must work on every release that has it (else doctor could not answer there)."""
    from sglang_consumer_gpu.patches.attention_extend import upstream_fixed_from_source

    patch = next(p for p in PATCHES if p.name == "attention-extend-blocks")
    specs = [
        find_gpu(n) for n in ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090")
    ]
    for version, root in releases.items():
        seam = patch.seam_for(version)
        if seam is None:
            continue
        source = read_source(_reader(root)[0], seam.module)
        for spec in specs:
            assert upstream_fixed_from_source(spec, source) in (True, False), (version, spec.name)


def test_pinned_release_wheel_is_the_installed_code(releases) -> None:
    """The source the AST check reads for 0.5.23 is the code the import-level tests run."""
    from sglang_consumer_gpu.patching.static import installed_reader

    wheel, _ = _reader(releases[PINNED_SGLANG])
    installed = installed_reader()
    assert installed is not None
    for patch in PATCHES:
        seam = patch.seam_for(PINNED_SGLANG)
        assert read_source(wheel, seam.module) == read_source(installed, seam.module), seam.module


def test_check_range_has_every_module_the_oracle_imports(releases) -> None:
    """`check` (versions.CHECK_SGLANG) needs these modules; the release below the range lacks one."""
    from sglang_consumer_gpu.oracle import virtual
    from sglang_consumer_gpu.oracle.kernels import attention
    from sglang_consumer_gpu.patches import moe_config

    modules = {*virtual.PRELOAD, *virtual.MODULE_CONSTANTS, moe_config.LAUNCHER.module, moe_config.ALIGN.module}
    modules |= {seam.module for seam in attention.LAUNCHERS.values()} | {virtual.EXEC_FIELDS.module}
    below = [v for v in SGLANG_RELEASES if not in_range(v, CHECK_SGLANG)][-1]
    for version, root in releases.items():
        _, names = _reader(root)
        present = all(any(p in names for p in module_paths(m)) for m in modules)
        if in_range(version, CHECK_SGLANG):
            assert present, version
    _, names = _reader(releases[below])
    assert not all(any(p in names for p in module_paths(m)) for m in modules), below


def test_installing_the_plugin_never_changes_sglang(plugin_wheel: Path) -> None:
    """The wheel requires neither sglang nor torch/triton (pip would up- or downgrade
    them to satisfy a bound); the covered range is an opt-in extra whose bounds
    are versions.COVERED_SGLANG."""
    from sglang_consumer_gpu.versions import COVERED_SGLANG

    with zipfile.ZipFile(plugin_wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [
        Requirement(line.split(":", 1)[1]) for line in meta.splitlines() if line.startswith("Requires-Dist:")
    ]
    base = {r.name for r in requires if r.marker is None}
    assert base and not base & {"sglang", "torch", "triton"}, base
    (extra,) = [
        r for r in requires if r.name == "sglang" and r.marker and r.marker.evaluate({"extra": "sglang"})
    ]
    assert extra.specifier == SpecifierSet(COVERED_SGLANG)


def _family_seams() -> list[tuple[str, object]]:
    """Every seam a family declares beside its patched ones (launchers, helpers, the modules the
    tools import), by name."""
    from sglang_consumer_gpu.families import FAMILIES
    from sglang_consumer_gpu.oracle import virtual
    from sglang_consumer_gpu.patching.base import Seam

    out = [("oracle.virtual.EXEC_FIELDS", virtual.EXEC_FIELDS)]
    for family in FAMILIES:
        for module in family.patch_modules:
            out += [(f"{module.__name__}.{k}", v) for k, v in vars(module).items() if isinstance(v, Seam)]
    return out


@pytest.mark.parametrize(("name", "seam"), _family_seams(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_family_seam_exists_from_the_first_release_of_its_range(releases, name, seam) -> None:
    """A seam's module is in every covered release of its range, and not in the release before it
    (the range starts where the module does)."""
    inside = [v for v in SGLANG_RELEASES if in_range(v, seam.sglang)]
    assert inside, name
    for version in inside:
        _, names = _reader(releases[version])
        assert any(p in names for p in module_paths(seam.module)), (name, version)
    before = [v for v in SGLANG_RELEASES if Version(v) < Version(inside[0])]
    if before:
        _, names = _reader(releases[before[-1]])
        assert not any(p in names for p in module_paths(seam.module)), (name, before[-1])
