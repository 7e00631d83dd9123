"""SGLang 0.5.23's own backend selection, run for virtual sm_86/sm_89/sm_120 GPUs (and sm_75,
sm_90 for contrast), without and with the plugin's backend patches.

Each case resolves a real ``launch_server`` command line through SGLang's argument parser and
resolution pipeline on the CPU (as ``doctor --model`` does); the models are the fixtures'
config.json files (Qwen3-Next-80B-A3B-Instruct, DeepSeek-V3, gpt-oss-20b) and, for the model
families whose defaults the plugin steers, configs made by the installed transformers' own
``Olmo2Config()`` / ``Exaone4Config()`` (their defaults, plus the ``architectures`` field SGLang
dispatches on). The MXFP4 Marlin gate is SGLang's real method run on a small layer.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import traceback
import types
from pathlib import Path

import pytest
import torch

from sglang_consumer_gpu.families import on_gpu
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.patches import mxfp4_marlin_gate
from sglang_consumer_gpu.planner import sglang_edge

FIX = Path(__file__).parent / "fixtures" / "models"
T4, RTX3090, RTX4090, H100, RTX5090 = (
    find_gpu(n) for n in ("Tesla T4", "RTX 3090", "RTX 4090", "NVIDIA H100 80GB HBM3", "RTX 5090")
)
CONSUMER = (RTX3090, RTX4090, RTX5090)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import transformers

    from sglang_consumer_gpu.activation import activate

    activate()
    sglang_edge._preload()
    out = {
        "qwen3-next": str(FIX / "Qwen3-Next-80B-A3B-Instruct"),
        "deepseek-v3": str(FIX / "DeepSeek-V3"),
        "gpt-oss": str(FIX / "gpt-oss-20b"),
    }
    for name, cls, arch in (
        ("olmo2", transformers.Olmo2Config, "Olmo2ForCausalLM"),
        ("exaone4", transformers.Exaone4Config, "Exaone4ForCausalLM"),
    ):
        d = tmp_path_factory.mktemp(name)
        (d / "config.json").write_text(json.dumps({**cls().to_dict(), "architectures": [arch]}))
        out[name] = str(d)
    return out


def _resolved(spec, model_dir: str, argv: list[str], *, patched: bool):
    from sglang.srt.arg_groups.overrides import resolving_view

    sa = sglang_edge._resolve(
        spec, model_dir, argv, spec.memory_bytes / 2**20, sglang_edge._Notes(), patched=patched
    )
    return resolving_view(sa)


def _attention(spec, model_dir: str, argv: list[str]) -> tuple[str, str]:
    """(SGLang alone, with the plugin)."""
    return tuple(_resolved(spec, model_dir, argv, patched=p).attention_backend for p in (False, True))


@pytest.mark.parametrize("model", ["olmo2", "exaone4"])
def test_fa3_default_on_sm120_becomes_triton(models: dict[str, str], model: str) -> None:
    """olmo2.py:27 / exaone.py:26 pick fa3 for device_sm >= 80, sm_120 included; FA3 has no sm_120 kernels."""
    got = {spec.arch_name: _attention(spec, models[model], ["--tp", "1"]) for spec in (*CONSUMER, H100)}
    assert got == {
        "sm_86": ("fa3", "fa3"),  # FA3 has MHA kernels on sm_8x: SGLang's choice stays
        "sm_89": ("fa3", "fa3"),
        "sm_120": ("fa3", "triton"),
        "sm_90": ("fa3", "fa3"),
    }


def test_hybrid_linear_attention_default_has_kernels(models: dict[str, str]) -> None:
    """sgl-project/sglang#10618 (FA3 for Qwen3-Next on sm_89) is gone in 0.5.23: FlashInfer is picked
    on sm_86/89/120 and the plugin has nothing to change."""
    for spec in CONSUMER:
        assert _attention(spec, models["qwen3-next"], ["--tp", "8"]) == ("flashinfer", "flashinfer"), (
            spec.arch_name
        )
    assert _attention(H100, models["qwen3-next"], ["--tp", "8"]) == ("fa3", "fa3")


def test_deterministic_fa3_for_mla_below_hopper_becomes_triton(models: dict[str, str]) -> None:
    """overrides.py:1100-1110: --enable-deterministic-inference gives every GPU below sm_100 fa3,
    whose MLA kernels are Hopper-only; T4 has no FA3 at all."""
    det = ["--tp", "8", "--enable-deterministic-inference"]
    got = {spec.arch_name: _attention(spec, models["deepseek-v3"], det) for spec in (*CONSUMER, H100, T4)}
    assert got == {
        "sm_86": ("fa3", "triton"),
        "sm_89": ("fa3", "triton"),
        "sm_120": ("triton", "triton"),
        "sm_90": ("fa3", "fa3"),
        "sm_75": ("fa3", "triton"),
    }
    # an MHA model keeps FA3 where it has MHA kernels
    assert _attention(RTX4090, models["qwen3-next"], det) == ("fa3", "fa3")
    assert _attention(T4, models["qwen3-next"], det) == ("fa3", "triton")


@pytest.mark.parametrize(
    ("model", "spec", "argv"),
    [
        ("olmo2", RTX5090, ["--attention-backend", "fa3"]),
        ("exaone4", RTX5090, ["--attention-backend", "fa3"]),
        (
            "deepseek-v3",
            RTX4090,
            ["--tp", "8", "--enable-deterministic-inference", "--attention-backend", "fa3"],
        ),
    ],
)
def test_an_explicit_flag_always_wins(models: dict[str, str], model: str, spec, argv: list[str]) -> None:
    assert _attention(spec, models[model], argv) == ("fa3", "fa3")


def test_gpt_oss_moe_runner_is_sglangs_on_every_gpu(models: dict[str, str]) -> None:
    """The MXFP4 MoE runner SGLang resolves (gpt_oss.py:64-111); the plugin changes no server argument
    here, it lifts the Marlin gate at weight loading (tested below)."""
    got = {}
    for spec in CONSUMER:
        for argv in ([], ["--moe-runner-backend", "marlin"]):
            cfg = _resolved(spec, models["gpt-oss"], argv, patched=True)
            got[spec.arch_name, bool(argv)] = (cfg.attention_backend, cfg.moe_runner_backend)
    assert got == {
        ("sm_86", False): ("triton", "triton_kernel"),
        ("sm_86", True): ("triton", "marlin"),
        ("sm_89", False): ("triton", "triton_kernel"),
        ("sm_89", True): ("triton", "marlin"),
        ("sm_120", False): ("triton", "flashinfer_mxfp4"),
        ("sm_120", True): ("triton", "marlin"),
    }


def _marlin_layer() -> torch.nn.Module:
    """A small MXFP4 MoE layer as FusedMoE hands it to the quant method (2 experts, hidden 128)."""
    experts, hidden, inter = 2, 128, 64
    layer = torch.nn.Module()
    layer.hidden_size, layer.intermediate_size_per_partition = hidden, inter
    layer.moe_runner_config = types.SimpleNamespace(
        apply_router_weight_on_input=False, is_gated=True, activation="silu", gemm1_alpha=None
    )
    shapes = {
        "w13_weight": (experts, 2 * inter, hidden // 2),
        "w2_weight": (experts, hidden, inter // 2),
        "w13_weight_scale": (experts, 2 * inter, hidden // 32),
        "w2_weight_scale": (experts, hidden, inter // 32),
    }
    for name, shape in shapes.items():
        fill = 127 if name.endswith("scale") else 0  # e8m0 127 = 1.0
        layer.register_parameter(name, torch.nn.Parameter(torch.full(shape, fill, dtype=torch.uint8), False))
    return layer


def _marlin_outcome(spec, *, patched: bool) -> tuple[str, str, list[str]]:
    """SGLang's ``Mxfp4MoEMethod.process_weights_after_loading`` for ``--moe-runner-backend marlin``
    on ``spec``: the exception it stops with on this CPU and the functions it got through."""
    from sglang.srt.layers.quantization.mxfp4 import Mxfp4MoEMethod

    method = Mxfp4MoEMethod.__new__(Mxfp4MoEMethod)
    method.use_marlin, method.use_mega_moe = True, False
    method.moe_runner_config = types.SimpleNamespace(gemm1_alpha=None)
    with on_gpu(spec, patched=patched):
        try:
            Mxfp4MoEMethod.process_weights_after_loading(method, _marlin_layer())
        except Exception as exc:
            return type(exc).__name__, str(exc), [f.name for f in traceback.extract_tb(exc.__traceback__)]
    return "", "", []


def test_mxfp4_marlin_gate_is_lifted_on_sm8x_only(models: dict[str, str]) -> None:
    """Unpatched, sm_86/sm_89 stop at the gate; patched, they take the path sm_120 takes (through
    SGLang's Marlin preparation to the sgl-kernel repack, which this CPU machine has no kernel for)."""
    gate = ("RuntimeError", "MXFP4 Marlin requires SM90+.")
    sm120 = _marlin_outcome(RTX5090, patched=False)
    assert sm120[:2] != gate and "prepare_moe_mxfp4_layer_for_marlin" in sm120[2]
    for spec in (RTX3090, RTX4090):
        assert _marlin_outcome(spec, patched=False)[:2] == gate
        lifted = _marlin_outcome(spec, patched=True)
        assert lifted[:2] == sm120[:2] and "prepare_moe_mxfp4_layer_for_marlin" in lifted[2]
    assert _marlin_outcome(T4, patched=True)[:2] == gate  # Marlin needs sm_80: the gate stays
    assert _marlin_outcome(H100, patched=True)[:2] == sm120[:2]  # open already; SGLang's own method


@pytest.mark.parametrize("patch", mxfp4_marlin_gate.PATCHES, ids=lambda p: p.name)
def test_the_rewrite_changes_the_gate_and_nothing_else(patch) -> None:
    """The lifted method is SGLang's, statement for statement, but for the gate's condition."""
    import importlib

    seam = patch.current_seam()
    module = importlib.import_module(seam.module)
    cls, name = seam.attr.split(".")
    original = inspect.unwrap(getattr(module, cls).__dict__[name])  # SGLang's, patched or not
    lifted = mxfp4_marlin_gate.lift_gate(original, module, lambda: True)
    assert lifted.__qualname__ == original.__qualname__
    assert lifted.__code__.co_filename == original.__code__.co_filename

    def tree() -> ast.FunctionDef:
        return ast.parse(textwrap.dedent(inspect.getsource(original))).body[0]

    after = mxfp4_marlin_gate._LiftGate().visit(tree())
    changed = []
    for node in ast.walk(after):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith(f"(not {mxfp4_marlin_gate._OPEN}())"):
            changed.append(node)
            node.test = node.test.values[0]  # undo the one change
    assert len(changed) == 1
    assert ast.dump(after) == ast.dump(tree())


def test_a_method_without_a_liftable_gate_is_refused() -> None:
    source = "class C:\n    def process_weights_after_loading(self, layer):\n        super().f()\n"
    assert "not found" in mxfp4_marlin_gate.gate_in_source(source, "D")
    assert "0 'MXFP4 Marlin requires" in mxfp4_marlin_gate.gate_in_source(source, "C")
    gated = source + '        if x:\n            raise RuntimeError("MXFP4 Marlin requires SM90+.")\n'
    assert "super()" in mxfp4_marlin_gate.gate_in_source(gated, "C")
