"""`sglang-consumer-gpu moe-config`: per batch size, config, source and oracle-verified shared memory."""

from __future__ import annotations

import json
import os

import pytest

from sglang_consumer_gpu.cli import main
from sglang_consumer_gpu.moe.shape import STANDARD_BATCH_GRID

RTX_4090 = "NVIDIA GeForce RTX 4090"


@pytest.fixture(autouse=True)
def empty_user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", str(tmp_path / "none"))
    from sglang_consumer_gpu.moe import lookup

    lookup.clear_cache()


def test_json_with_oracle(capsys):
    rc = main(
        [
            "moe-config",
            "--E",
            "128",
            "--N",
            "768",
            "--K",
            "2048",
            "--topk",
            "8",
            "--dtype",
            "fp8_w8a8",
            "--gpu",
            RTX_4090,
            "--json",
            "--oracle",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["M"] for r in out["rows"]] == list(STANDARD_BATCH_GRID)
    for r in out["rows"]:
        assert r["source"] == "heuristic"
        assert r["oracle"] == "oracle", r["oracle"]
        assert r["shared_oracle"] <= r["limit"] == 101376
        assert r["shared_oracle"] <= r["shared_estimate"]  # the analytic model is an upper bound


def test_answers_in_about_a_second_from_what_the_oracle_measured(tmp_path):
    """Without --oracle nothing compiles and SGLang is not imported: the bound, or the oracle's bytes
    where an earlier --oracle run left them (issue 24, part 5)."""
    import subprocess
    import sys

    argv = ["moe-config", "--E", "256", "--N", "64", "--K", "7168", "--topk", "8", "--dtype", "int8_w8a8",
            "--gpu", "NVIDIA L40S", "--json"]  # fmt: skip
    code = ("import json, sys; from sglang_consumer_gpu.cli import main; main(sys.argv[1:]); "
            "print(json.dumps({'sglang_imported': 'sglang' in sys.modules}))")  # fmt: skip
    env = {**os.environ, "SGLANG_CONSUMER_GPU_CACHE_DIR": str(tmp_path / "cache")}

    def run(*extra: str) -> tuple[dict, bool]:
        p = subprocess.run([sys.executable, "-c", code, *argv, *extra], capture_output=True, text=True, env=env,
                           timeout=600)  # fmt: skip
        assert p.returncode == 0, p.stderr
        table, last = p.stdout.rstrip().rsplit("\n", 1)
        return json.loads(table), json.loads(last)["sglang_imported"]

    cold, imported = run()
    assert not imported and {r["oracle"] for r in cold["rows"]} == {"not measured yet"}
    measured, _ = run("--oracle")
    warm, imported = run()
    assert not imported
    assert [r["shared_oracle"] for r in warm["rows"]] == [r["shared_oracle"] for r in measured["rows"]]
    assert all(isinstance(r["shared_oracle"], int) and r["fits"] for r in warm["rows"])


def test_model_config_json(tmp_path, capsys):
    cfg = {
        "architectures": ["Qwen3MoeForCausalLM"],
        "num_hidden_layers": 94,
        "num_attention_heads": 64,
        "vocab_size": 151936,
        "hidden_size": 4096,
        "moe_intermediate_size": 1536,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc = main(["moe-config", "--model", str(tmp_path), "--tp", "2", "--gpu", "L40S", "--json", "--no-oracle"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["shape"] == "E=128,N=768,K=4096,topk=8,fp8_w8a8,block=[128, 128]"
    assert all(r["config"]["BLOCK_SIZE_K"] <= 128 for r in out["rows"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--E", "128", "--N", "768"], "missing --K --topk"),
        (["--E", "128", "--N", "768", "--K", "2048", "--topk", "8", "--dtype", "fp4"], "unknown MoE dtype"),
        (["--E", "8", "--N", "768", "--K", "2048", "--topk", "9"], "topk"),
        (["--model", "/nonexistent/model"], "no such directory or file"),
        (["--E", "8", "--N", "7", "--K", "8", "--topk", "2", "--gpu", "RTX 9999"], "unknown GPU"),
    ],
)
def test_bad_input_is_a_clean_error(capsys, argv, message):
    rc = main(
        ["moe-config", *argv, "--gpu", RTX_4090, "--no-oracle"]
        if "--gpu" not in argv
        else ["moe-config", *argv]
    )
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "models"


def test_hf_id_from_the_local_cache(tmp_path, monkeypatch, capsys):
    """The README's own example: moe-config --model Qwen/Qwen3-30B-A3B-FP8 (cached, never downloaded)."""
    from huggingface_hub import constants

    folder = tmp_path / "models--Qwen--Qwen3-30B-A3B-FP8"
    (folder / "snapshots" / "abc").mkdir(parents=True)
    (folder / "snapshots" / "abc" / "config.json").write_text(
        (FIXTURES / "Qwen3-30B-A3B-FP8" / "config.json").read_text()
    )
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    rc = main(["moe-config", "--model", "Qwen/Qwen3-30B-A3B-FP8", "--gpu", RTX_4090, "--json", "--no-oracle"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["shape"] == "E=128,N=768,K=2048,topk=8,fp8_w8a8,block=[128, 128]"
    rc = main(["moe-config", "--model", "Qwen/Qwen3-30B-A3B", "--gpu", RTX_4090])
    assert rc == 2 and "not in the local Hugging Face cache" in capsys.readouterr().err


def test_fp8_on_rtx_3090_says_what_sglang_does(capsys):
    rc = main(["moe-config", "--model", str(FIXTURES / "Qwen3-30B-A3B-FP8"), "--gpu", "RTX 3090"])
    err = capsys.readouterr().err
    assert rc == 2 and "fp8e4nv not supported" in err and "CompilationError" not in err
    assert "weight-only FP8 kernel" in err and "check --only fp8-moe" in err


def test_expert_parallel_model_shape(capsys):
    rc = main(["moe-config", "--model", str(FIXTURES / "Qwen3-235B-A22B-FP8"), "--tp", "8", "--ep", "8",
               "--gpu", "L40S", "--json", "--no-oracle"])  # fmt: skip
    assert rc == 0 and json.loads(capsys.readouterr().out)["shape"].startswith("E=16,N=1536,")
