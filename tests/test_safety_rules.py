"""Safety-net rules: the order of variants, and that each shrink rule matches SGLang 0.5.23's real kernels."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from sglang_consumer_gpu.patches import attention_extend, moe_config
from sglang_consumer_gpu.patches.safety_net import rule_book
from sglang_consumer_gpu.safety import rules
from sglang_consumer_gpu.safety.rules import Variant

MOE = moe_config.LAUNCHER.module
EXTEND = attention_extend.MODULE
BOOK = rule_book()
rules.install(BOOK)  # what the safety-net patch installs when it builds the guard


def test_stages_step_down_before_any_shrink():
    rule = rules.rule_for(EXTEND, "_fwd_kernel")
    got = rules.variants(3, {"BLOCK_N": 64, "BLOCK_N_PREFIX": 64}, rule)
    assert got == [
        Variant(2),
        Variant(1),
        Variant(1, (("BLOCK_N", 32), ("BLOCK_N_PREFIX", 32))),
        Variant(1, (("BLOCK_N", 16), ("BLOCK_N_PREFIX", 16))),
    ]


def test_no_rule_means_stages_only():
    assert rules.variants(4, {"BLOCK_SIZE_K": 64}, None) == [Variant(3), Variant(2), Variant(1)]
    assert rules.variants(1, {"BLOCK_SIZE_K": 64}, None) == []


def test_moe_rule_halves_k_down_to_32_and_respects_the_quant_group():
    rule = rules.rule_for(MOE, "fused_moe_kernel")
    names = ("a_desc", "b_desc", "group_k", "BLOCK_SIZE_K")
    plain = {"BLOCK_SIZE_K": 128, "a_desc": None, "b_desc": None, "group_k": 0}
    assert rule.steps(plain, names) == [(("BLOCK_SIZE_K", 64),), (("BLOCK_SIZE_K", 32),)]
    # block-fp8 [128, 128]: one scale per K step, so the step must divide 128
    assert rule.steps({**plain, "group_k": 128}, names) == [(("BLOCK_SIZE_K", 64),), (("BLOCK_SIZE_K", 32),)]
    assert rule.steps({**plain, "group_k": 80}, names) == []  # 64 does not divide 80
    # a TMA descriptor (a real object, so not a constexpr) has the tile baked in
    no_desc = {k: v for k, v in plain.items() if k != "b_desc"}
    assert rule.steps(no_desc, names) == []


def test_extend_rule_halves_what_the_kernel_has():
    rule = rules.rule_for(EXTEND, "_fwd_kernel")
    # SGLang 0.5.17's _fwd_kernel has no BLOCK_N_PREFIX
    assert rule.steps({"BLOCK_N": 64}) == [(("BLOCK_N", 32),), (("BLOCK_N", 16),)]


def test_numerics_fixed_kernels_have_no_shrink_rule():
    for kernel, modules in BOOK.numerics_fixed.items():
        for module in modules:
            assert rules.rule_for(module, kernel) is None
            assert rules.numerics_fixed(module, kernel)
            assert "deterministic" in rules.hint(module, kernel)
    assert rules.hint("sglang.x", "unknown") == rules.DEFAULT_HINT


def test_describe_names_only_what_changed():
    before = {"num_stages": 1, "num_warps": 8, "BLOCK_N": 64}
    assert Variant(1, (("BLOCK_N", 32),)).describe(before) == "BLOCK_N=32 (was 64)"
    assert Variant(2).describe({"num_stages": 4}) == "num_stages=2 (was 4)"


@pytest.mark.parametrize("rule", BOOK.rules, ids=lambda r: r.kernel)
def test_rule_params_exist_in_sglangs_kernel(rule):
    for module in rule.modules:
        jit = getattr(importlib.import_module(module), rule.kernel)
        names = set(jit.arg_names)
        assert set(rule.params) <= names
        assert set(rule.requires_none) <= names
        assert rule.divides is None or rule.divides in names


def _grid_source(fn: object) -> list[str]:
    """Every ``grid = ...`` statement of an SGLang launcher (up to the closing bracket)."""
    src = inspect.getsource(fn)
    out = []
    for m in re.finditer(r"^\s*grid = ", src, re.M):
        depth, i = 0, m.end()
        while i < len(src):
            c = src[i]
            depth += c in "([{"
            depth -= c in ")]}"
            if c == "\n" and depth <= 0:
                break
            i += 1
        out.append(src[m.start() : i])
    return out


@pytest.mark.parametrize(
    ("module", "launcher", "kernel"),
    [
        (MOE, "invoke_fused_moe_kernel", "fused_moe_kernel"),
        (EXTEND, "extend_attention_fwd", "_fwd_kernel"),
        (EXTEND, "dense_prefill_attention_fwd", "_fwd_kernel_dense_prefill"),
    ],
)
def test_shrink_params_are_not_in_the_launch_grid(module, launcher, kernel):
    """The guard stores a smaller tile under the original launch's key and the
    launcher still sizes the grid from its own values: safe only while no grid
    uses the parameters a rule changes (SGLang 0.5.23's launchers)."""
    rule = rules.rule_for(module, kernel)
    grids = _grid_source(getattr(importlib.import_module(module), launcher))
    assert grids, f"no grid statement found in {launcher}"
    for grid in grids:
        for param in rule.params:
            assert param not in grid, grid
