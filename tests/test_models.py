"""models/: config.json, a model directory or a cached HF id -> a plain description."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sglang_consumer_gpu.models import (
    ModelConfigError,
    QuantizationNotUnderstood,
    describe,
    load_model,
    moe_shape,
    parse_quantization,
    resolve,
)

FIXTURES = Path(__file__).parent / "fixtures" / "models"


def test_qwen3_moe_description() -> None:
    d = load_model(str(FIXTURES / "Qwen3-30B-A3B"))
    assert (d.layers, d.hidden, d.vocab, d.tie_word_embeddings) == (48, 2048, 151936, False)
    a = d.attention
    assert (a.kind, a.q_heads, a.kv_heads, a.head_dim, a.v_head_dim) == ("mha", 32, 4, 128, 128)
    assert d.moe is not None and (
        d.moe.experts,
        d.moe.topk,
        d.moe.intermediate,
        d.moe.shared_intermediate,
    ) == (
        128,
        8,
        768,
        0,
    )
    assert len(d.moe_layers) == 48 and d.dense_layers == ()
    assert not d.quantization.quantized


def test_fp8_block_with_unconverted_modules() -> None:
    d = load_model(str(FIXTURES / "Qwen3-30B-A3B-FP8" / "config.json"))
    q = d.quantization
    assert (q.method, q.block, q.moe_dtype, q.activations) == ("fp8", (128, 128), "fp8_w8a8", "dynamic")
    assert "lm_head" in q.unquantized and "model.layers.0.mlp.gate" in q.unquantized
    assert moe_shape(d, tp=2).label == "E=128,N=384,K=2048,topk=8,fp8_w8a8,block=[128, 128]"


def test_deepseek_mla_dense_and_shared_layers() -> None:
    d = load_model(str(FIXTURES / "DeepSeek-R1"))
    a = d.attention
    assert a.is_mla and (
        a.q_lora_rank,
        a.kv_lora_rank,
        a.qk_nope_head_dim,
        a.qk_rope_head_dim,
        a.v_head_dim,
    ) == (
        1536,
        512,
        128,
        64,
        128,
    )
    assert d.dense_layers == (0, 1, 2) and len(d.moe_layers) == 58
    assert d.moe is not None and d.moe.shared_intermediate == 2048 and d.dense_intermediate == 18432
    assert d.nextn_layers == 1
    assert d.quantization.block == (128, 128)


def test_quantization_flag_overrides_the_config() -> None:
    d = load_model(str(FIXTURES / "DeepSeek-R1-Channel-INT8"), quantization="w8a8_int8")
    q = d.quantization
    assert (q.method, q.per_channel, q.moe_dtype, q.source) == (
        "w8a8_int8",
        True,
        "int8_w8a8",
        "--quantization",
    )
    assert moe_shape(d, tp=32).label == "E=256,N=64,K=7168,topk=8,int8_w8a8,per_channel"


def test_expert_parallel_shape() -> None:
    d = load_model(str(FIXTURES / "Qwen3-235B-A22B-FP8"))
    assert moe_shape(d, tp=8, ep=8).label == "E=16,N=1536,K=4096,topk=8,fp8_w8a8,block=[128, 128]"
    with pytest.raises(ModelConfigError, match="must divide"):
        moe_shape(d, tp=8, ep=3)


@pytest.mark.parametrize(
    ("qcfg", "field"),
    [
        ({"quant_method": "bitsandbytes"}, "quant_method"),
        ({"quant_method": "fp8", "weight_block_size": [128]}, "weight_block_size"),
        ({"quant_method": "gptq", "bits": 3}, "bits"),
        ({"quant_method": "compressed-tensors", "config_groups": {}}, "config_groups"),
        ({"quant_method": "fp8", "activation_scheme": "weird"}, "activation_scheme"),
    ],
)
def test_quantization_not_understood_names_the_field(qcfg: dict, field: str) -> None:
    with pytest.raises(QuantizationNotUnderstood) as info:
        parse_quantization(qcfg)
    assert info.value.field == field and f"quantization_config.{field}" in str(info.value)


def test_unread_fields_are_listed() -> None:
    q = parse_quantization({"quant_method": "fp8", "weight_block_size": [128, 128], "new_knob": 1})
    assert q.unread_fields == ("new_knob",)


def test_compressed_tensors_and_awq() -> None:
    ct = parse_quantization(
        {
            "quant_method": "compressed-tensors",
            "config_groups": {
                "g": {
                    "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
                    "input_activations": {"num_bits": 8, "dynamic": True},
                }
            },
        }
    )
    assert (ct.moe_dtype, ct.per_channel, ct.activations) == ("int8_w8a8", True, "dynamic")
    awq = parse_quantization({"quant_method": "awq", "bits": 4, "group_size": 128})
    assert (awq.moe_dtype, awq.group_size, awq.weight_bits) == ("int4_w4a16", 128, 4)


def test_dense_model_has_no_moe_shape(tmp_path: Path) -> None:
    cfg = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
           "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    d = load_model(str(tmp_path))
    assert not d.is_moe and d.attention.kv_heads == 4 and d.attention.head_dim == 16
    with pytest.raises(ModelConfigError, match="not a MoE model"):
        moe_shape(d)


def test_multimodal_text_config() -> None:
    d = describe({"architectures": ["X"], "text_config": {"num_hidden_layers": 2, "hidden_size": 64,
                  "num_attention_heads": 4, "vocab_size": 10}})  # fmt: skip
    assert d.layers == 2


def _fake_hf_cache(root: Path, repo: str, cfg_src: Path) -> None:
    folder = root / ("models--" + repo.replace("/", "--"))
    snap = folder / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(cfg_src.read_text())
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abc")


def test_hf_id_from_the_local_cache_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    _fake_hf_cache(tmp_path, "Qwen/Qwen3-30B-A3B-FP8", FIXTURES / "Qwen3-30B-A3B-FP8" / "config.json")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    files = resolve("Qwen/Qwen3-30B-A3B-FP8")
    assert files.source == "Hugging Face cache" and files.config_path.name == "config.json"
    assert load_model("Qwen/Qwen3-30B-A3B-FP8").quantization.block == (128, 128)
    with pytest.raises(
        ModelConfigError, match=r"not in the local Hugging Face cache.*huggingface-cli download"
    ):
        resolve("Qwen/Qwen3-0.6B")


@pytest.mark.parametrize("ref", ["", "/no/such/dir", "./relative/missing"])
def test_bad_references(ref: str) -> None:
    with pytest.raises(ModelConfigError):
        resolve(ref)
