"""FP8 linear layers: what SGLang 0.5.23 itself runs on each GPU, and what ``doctor --model`` says.

The plugin patches no FP8 linear layer (:mod:`sglang_consumer_gpu.fp8.linear`). These tests hold
that decision to SGLang's real code on virtual GPUs: ``Fp8LinearMethod`` chooses Marlin exactly
where the plugin says, the compressed-tensors W8A8-FP8 scheme falls back to its Marlin scheme
there, and the minimum capabilities the planner quotes are SGLang's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sglang_consumer_gpu.families import fp8 as fp8_family
from sglang_consumer_gpu.fp8.linear import MARLIN, MIN_CAPABILITY, REFUSED, W8A8, linear_path
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models import load_model
from sglang_consumer_gpu.models.launch import Launch
from sglang_consumer_gpu.planner.constraints import FAIL, check_constraints

REPO = Path(__file__).resolve().parents[1]
GPUS = {
    "NVIDIA GeForce RTX 3090": MARLIN,
    "NVIDIA RTX A6000": MARLIN,
    "NVIDIA A10": MARLIN,
    "NVIDIA A100-SXM4-80GB": MARLIN,
    "NVIDIA GeForce RTX 4090": W8A8,
    "NVIDIA L40S": W8A8,
    "NVIDIA GeForce RTX 5090": W8A8,
    "NVIDIA H100 80GB HBM3": W8A8,
    "Tesla T4": REFUSED,
}


@pytest.mark.parametrize(("gpu", "kind"), GPUS.items())
def test_fp8_linear_path_per_gpu(gpu: str, kind: str) -> None:
    spec = find_gpu(gpu)
    assert linear_path(spec, "fp8").kind == kind
    assert linear_path(spec, "compressed-tensors").kind == kind
    for method in ("w8a8_fp8", "modelopt_fp8"):
        got = linear_path(spec, method)
        assert got.kind == (W8A8 if spec.supports_fp8_e4m3 else REFUSED)
        if got.kind == REFUSED:
            cap = spec.capability[0] * 10 + spec.capability[1]
            assert f"Minimum capability: 89. Current capability: {cap}." in got.why


def test_the_minimum_capabilities_are_sglangs() -> None:
    from sglang.srt.layers.quantization.compressed_tensors.schemes.compressed_tensors_w8a8_fp8 import (
        CompressedTensorsW8A8Fp8,
    )
    from sglang.srt.layers.quantization.compressed_tensors.schemes.compressed_tensors_w8a16_fp8 import (
        CompressedTensorsW8A16Fp8,
    )
    from sglang.srt.layers.quantization.fp8 import Fp8Config
    from sglang.srt.layers.quantization.modelopt_quant import ModelOptFp8Config
    from sglang.srt.layers.quantization.w8a8_fp8 import W8A8Fp8Config

    assert {
        "fp8": Fp8Config(is_checkpoint_fp8_serialized=True).get_min_capability(),
        "compressed-tensors": CompressedTensorsW8A16Fp8.get_min_capability(),
        "w8a8_fp8": W8A8Fp8Config.get_min_capability(),
        "modelopt_fp8": ModelOptFp8Config.get_min_capability(),
    } == MIN_CAPABILITY
    # SGLang's e4m3 linear GEMMs start where the GPU's e4m3 does (GpuSpec.supports_fp8_e4m3: sm_89; sm_87 is the last one below)
    assert CompressedTensorsW8A8Fp8.get_min_capability() == 89
    assert GpuSpec.for_arch(8, 9).supports_fp8_e4m3 and not GpuSpec.for_arch(8, 7).supports_fp8_e4m3


def test_the_refusal_quotes_sglangs_loader() -> None:
    import inspect

    from sglang.srt.model_loader import loader

    source = inspect.getsource(loader)
    assert "is not supported for the current GPU. " in source
    assert '"Minimum capability: {quant_config.get_min_capability()}. "' in source
    assert '"Current capability: {capability}."' in source


@pytest.mark.parametrize("gpu", [g for g, kind in GPUS.items() if kind != REFUSED])
@pytest.mark.parametrize("block", [[128, 128], None])
def test_fp8_linear_method_chooses_marlin_where_the_plugin_says(
    gpu: str, block: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SGLang 0.5.23's ``Fp8LinearMethod`` on a virtual GPU: ``use_marlin`` exactly on sm_80-sm_88.
    Its module read ``_is_cuda`` at import on this CPU machine; the virtual GPU answers everything
    else (``can_auto_enable_marlin_fp8`` asks ``torch.cuda.get_device_capability``)."""
    import sglang.srt.layers.quantization.fp8 as sglang_fp8

    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    spec = find_gpu(gpu)
    monkeypatch.setattr(sglang_fp8, "_is_cuda", True)
    monkeypatch.delenv("SGLANG_FORCE_FP8_MARLIN", raising=False)
    with virtual_gpu(spec):
        method = sglang_fp8.Fp8LinearMethod(
            sglang_fp8.Fp8Config(is_checkpoint_fp8_serialized=True, weight_block_size=block)
        )
    assert method.use_marlin is (linear_path(spec, "fp8").kind == MARLIN)


@pytest.mark.parametrize("gpu", ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090"])
def test_compressed_tensors_fp8_falls_back_to_marlin_below_sm89(gpu: str) -> None:
    from sglang.srt.layers.quantization.compressed_tensors.compressed_tensors import CompressedTensorsConfig

    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    group = {
        "targets": ["Linear"],
        "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True, "dynamic": False},
        "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": True,
                              "dynamic": True},
    }  # fmt: skip
    config = CompressedTensorsConfig.from_config(
        {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": group}}
    )
    spec = find_gpu(gpu)
    linear = config.target_scheme_map["Linear"]
    with virtual_gpu(spec):
        scheme = config._get_scheme_from_parts(linear["weights"], linear["input_activations"])
    marlin = linear_path(spec, "compressed-tensors").kind == MARLIN
    assert type(scheme).__name__ == ("CompressedTensorsW8A16Fp8" if marlin else "CompressedTensorsW8A8Fp8")


def _model(tmp_path: Path, quantization: dict[str, Any]) -> Any:
    cfg = json.loads((REPO / "tests/fixtures/models/Qwen3-30B-A3B-FP8/config.json").read_text())
    cfg["quantization_config"] = quantization
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return load_model(str(tmp_path))


def test_doctor_model_states_both_paths_for_an_fp8_checkpoint_on_an_rtx_3090() -> None:
    desc = load_model(str(REPO / "tests/fixtures/models/Qwen3-30B-A3B-FP8"))
    spec, launch = find_gpu("NVIDIA GeForce RTX 3090"), Launch(argv=(), tp=2)
    findings = check_constraints(spec, desc, launch)
    assert not [f for f in findings if f.severity == FAIL]
    texts = [f.text for f in findings if f.area == "architecture"]
    assert any("FP8 Marlin W8A16" in t and "nvcc" in t and "1 byte per parameter" in t for t in texts)
    assert any("weight-only FP8 kernel" in t for t in texts)
    rows, notes = fp8_family.FAMILY.planner_rows(spec, desc, launch, compile=False)
    assert rows and "half the weight bytes" in notes[0]


@pytest.mark.parametrize(
    ("quantization", "method"),
    [({"quant_method": "w8a8_fp8"}, "w8a8_fp8"), ({"quant_method": "modelopt", "quant_algo": "FP8"}, "modelopt_fp8")],
)
def test_doctor_model_refuses_sm89_only_fp8_formats_on_an_rtx_3090(
    tmp_path: Path, quantization: dict[str, Any], method: str
) -> None:
    desc = _model(tmp_path, quantization)
    assert desc.quantization.method == method and desc.quantization.moe_dtype == "fp8_w8a8"
    spec, launch = find_gpu("NVIDIA GeForce RTX 3090"), Launch(argv=(), tp=2)
    fails = [f.text for f in check_constraints(spec, desc, launch) if f.severity == FAIL]
    assert len(fails) == 1 and f"The quantization method {method} is not supported" in fails[0]
    assert "Minimum capability: 89. Current capability: 86." in fails[0]
    assert fp8_family.FAMILY.planner_rows(spec, desc, launch, compile=False) == ([], [])
    four090 = find_gpu("NVIDIA GeForce RTX 4090")
    assert not [f for f in check_constraints(four090, desc, launch) if f.severity == FAIL]


def test_modelopt_other_than_fp8_is_not_read_as_fp8() -> None:
    from sglang_consumer_gpu.models.config import QuantizationNotUnderstood, parse_quantization

    with pytest.raises(QuantizationNotUnderstood, match="quant_algo"):
        parse_quantization({"quant_method": "modelopt", "quant_algo": "NVFP4"})
    assert parse_quantization({"quant_method": "modelopt_fp8"}).method == "modelopt_fp8"
