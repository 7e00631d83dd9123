"""The kernel families: one catalog, one answer per question, one home per SGLang path."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from sglang_consumer_gpu.families import FAMILIES, on_gpu
from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.patching.catalog import builtin_patch_modules

PACKAGE = Path(__file__).resolve().parents[1] / "sglang_consumer_gpu"
SGLANG_PATH = re.compile(r"^sglang(\.[A-Za-z_0-9]+)+$")


def test_every_patch_module_belongs_to_exactly_one_family():
    owners: dict[str, list[str]] = defaultdict(list)
    for family in FAMILIES:
        for module in family.patch_modules:
            owners[module.__name__].append(family.name)
    assert sorted(owners) == builtin_patch_modules()
    assert all(len(names) == 1 for names in owners.values()), owners
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


def test_every_sglang_path_is_written_once():
    """A dotted SGLang module path is a string in one module of the package (its family's
    patch module, or the one place that needs it), never copied."""
    where: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SGLANG_PATH.match(node.value):
                where[node.value].add(str(path.relative_to(PACKAGE)))
    assert len(where) > 10, "the scan finds SGLang's paths"
    copied = {p: sorted(files) for p, files in where.items() if len(files) > 1}
    assert not copied, copied


def test_on_gpu_sets_the_virtual_gpu_up_once_per_state():
    """Nested for the same GPU and patch state it changes nothing (check's whole run inside one);
    SGLang's own code inside it, the plugin's around it."""
    import sglang.kernels.ops.attention.extend_attention as ea

    from sglang_consumer_gpu.oracle import virtual

    spec = find_gpu("NVIDIA L40S")
    calls = []
    original = virtual.clear_sglang_caches
    try:
        virtual.clear_sglang_caches = lambda: calls.append(1) or original()
        with on_gpu(spec):
            outer = len(calls)
            with on_gpu(spec), on_gpu(spec):
                assert len(calls) == outer
            with on_gpu(spec, patched=False):
                assert spec.capability == ea.CUDA_CAPABILITY
    finally:
        virtual.clear_sglang_caches = original


def test_int8_w8a8_is_asked_for_per_channel():
    """SGLang's w8a8_int8 MoE method asks for the per-channel file; moe-config and doctor --model agree."""
    shape = moe_family.as_sglang_asks(MoeShape(256, 64, 7168, 8, "int8_w8a8"))
    assert shape.per_channel_quant
    up, down = moe_family.file_names(find_gpu("NVIDIA L40S"), shape)
    assert up == "E=256,N=64,device_name=NVIDIA_L40S,dtype=int8_w8a8,per_channel_quant=True.json"
    assert down.endswith("per_channel_quant=True_down.json")
    block = MoeShape(256, 64, 7168, 8, "int8_w8a8", (128, 128))
    assert moe_family.as_sglang_asks(block) == block


def test_where_the_plugin_does_not_act_its_choice_is_sglangs():
    """On an H100 (232 KB per block) the config patches stand down: what runs is SGLang's own."""
    spec, shape = find_gpu("NVIDIA H100 80GB HBM3"), MoeShape(128, 768, 2048, 8)
    assert not moe_family.active(spec)
    pick = moe_family.plugin_choice(spec, shape, 64)
    assert (pick.up, pick.down) == moe_family.sglang_choice(spec, shape, 64)
    assert pick.source.startswith("sglang")
