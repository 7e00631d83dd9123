"""``doctor --model``: one verdict per launch, the arithmetic, suggestions, exit codes and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sglang_consumer_gpu.cli import main

FIX = Path(__file__).parent / "fixtures" / "models"
Q235 = str(FIX / "Qwen3-235B-A22B-FP8")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["doctor", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_will_fail_with_reason_and_rechecked_fix(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "--model", Q235, "--gpu", "L40S", "--gpu-mem", "47.5", "--gpus", "8", "--no-compile",
                      "--tp", "8")  # fmt: skip
    assert rc == 3
    assert (
        "VERDICT: WILL FAIL" in out and "= 192 is not divisible by weight quantization block_n = 128" in out
    )
    assert "What to do (each re-checked by the planner)" in out
    assert "1. expert parallelism: --ep 8" in out and "-> OK" in out and "flags: --tp 8 --ep-size 8" in out


def test_json_and_pasted_launch_command(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "--json", "--gpu", "H200", "--gpus", "8", "--model-path", str(FIX / "DeepSeek-V3"),
                      "--tp", "8", "--trust-remote-code", "--enable-dp-attention", "--dp-size", "8",
                      "--host", "0.0.0.0", "--port", "8000", "--mem-fraction-static", "0.85")  # fmt: skip
    data = json.loads(out)
    assert rc == 1 and data["verdict"] == "AT RISK"
    assert data["launch"]["attn_dp"] == 8 and data["memory"]["sglang_default_mem_fraction_static"] < 0.85
    assert (
        data["suggestions"][0]["verdict"] == "OK"
        and "--mem-fraction-static" not in data["suggestions"][0]["argv"]
    )


def test_explain_shows_the_arithmetic(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "--model", str(FIX / "DeepSeek-R1-Channel-INT8"), "--gpu", "L40S", "--gpus", "8",
                      "--explain", "--tp", "32", "--nnodes", "4", "--quantization", "w8a8_int8")  # fmt: skip
    assert rc == 0 and "VERDICT: OK" in out
    for text in ("The arithmetic", "handle_gpu_memory_settings", "experts", "MLA latent, not sharded",
                 "assumed, not modelled", "KV pool =", "attention extend"):  # fmt: skip
        assert text in out, text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", Q235, "--gpu", "L40S", "--pp", "2"],
            "SGLang rejects these arguments: ambiguous option: --pp",
        ),
        (
            ["--model", Q235, "--gpu", "L40S", "--tp", "8", "--bogus-flag"],
            "unrecognized arguments: --bogus-flag",
        ),
        (["--gpu", "L40S", "--tp", "8"], "give the model with --model"),
        (["--model", "/no/such/model", "--gpu", "L40S"], "no such directory or file"),
        (["--model", Q235, "--gpu", "RTX 4095"], "closest known: NVIDIA GeForce RTX 4090"),
        (["--model", Q235, "--gpu", "L40S", "--gpus", "0"], "--gpus must be positive"),
    ],
)
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and message in err and "Traceback" not in err, err


def test_quantization_field_not_understood(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = json.loads((FIX / "Qwen3-30B-A3B" / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _run(capsys, "--model", str(tmp_path), "--gpu", "RTX 4090")
    assert rc == 2 and "quantization_config.quant_method = 'bitsandbytes'" in err


def test_more_gpus_than_the_node_has(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "--model", str(FIX / "Qwen3-30B-A3B"), "--gpu", "RTX 4090", "--gpus", "8",
                      "--no-compile", "--tp", "16")  # fmt: skip
    assert rc == 3 and "16 GPUs in total, 16 per node on --nnodes 1; a node here has 8" in out
    assert "--nnodes 2" in out


def test_other_commands_still_reject_unknown_flags() -> None:
    with pytest.raises(SystemExit) as info:
        main(["moe-config", "--E", "8", "--tp-size", "8"])
    assert info.value.code == 2


def test_the_launch_command_folds_in_every_fix_rechecked(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24 part 4: one line to run -- the user's flags, the best suggestion, every fix a finding names
    (here the switch that skips custom all-reduce on GeForce cards without peer access), re-checked."""
    rc, out, _ = _run(capsys, "--model", Q235, "--gpu", "L40S", "--gpu-mem", "47.5", "--gpus", "8", "--no-compile",
                      "--tp", "8")  # fmt: skip
    assert rc == 3
    assert "Launch command (re-checked: OK; added: expert parallelism: --ep 8" in out
    assert f"python -m sglang.launch_server --model-path {Q235} --tp 8 --ep-size 8" in out
    rc, out, _ = _run(capsys, "--json", "--model", str(FIX / "Qwen3-30B-A3B-FP8"), "--tp", "2", "--gpu", "RTX 4090",
                      "--gpus", "2", "--no-compile")  # fmt: skip
    cmd = json.loads(out)["launch_command"]
    assert cmd["verdict"] == "OK" and "--disable-custom-all-reduce" in cmd["argv"]
    assert cmd["command"].startswith("python -m sglang.launch_server --model-path ")
    assert cmd["argv"][:2] == ["--tp", "2"]  # the user's own flags come first, as given

