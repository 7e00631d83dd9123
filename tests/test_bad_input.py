"""Bad input as a new user and a hostile tester give it: one line saying what is wrong and what to do,
a non-zero exit (or the right verdict), never a traceback. Also the environment the tools run in: a
HOME whose caches cannot be written, a reader of stdout that goes away, Ctrl-C."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.cli import caches, main
from sglang_consumer_gpu.models import ModelConfigError
from sglang_consumer_gpu.models.config import describe
from sglang_consumer_gpu.planner.sglang_edge import InvalidValue, parse_args

FIX = Path(__file__).parent / "fixtures" / "models"
QWEN = FIX / "Qwen3-30B-A3B"
CLI = [sys.executable, "-m", "sglang_consumer_gpu"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line_error(rc: int, err: str, text: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err and text in err, err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    env.update(extra)
    return env


# ------------------------------------------------------------------------------ launch flags


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tp", "0"], "--tp-size must be a positive integer (got 0)"),
        (["--tp", "-1"], "--tp-size must be a positive integer (got -1)"),
        (["--ep", "0"], "--ep-size must be a positive integer (got 0)"),
        (["--pp-size", "0"], "--pp-size must be a positive integer (got 0)"),
        (["--dp", "0"], "--dp-size must be a positive integer (got 0)"),
        (["--nnodes", "0"], "--nnodes must be a positive integer (got 0)"),
        (["--mem-fraction-static", "1.5"], "--mem-fraction-static must be between 0 and 1 (got 1.5)"),
        (["--mem-fraction-static", "nan"], "--mem-fraction-static must be between 0 and 1 (got nan)"),
        (["--context-length", "-1"], "--context-length must be a positive integer (got -1)"),
        (["--max-running-requests", "0"], "--max-running-requests must be a positive integer (got 0)"),
    ],
)
def test_launch_values_sglang_parses_but_no_launch_can_have(flags: list[str], message: str) -> None:
    """SGLang 0.5.23's own parser takes these (and the launch dies later at a division or an
    allocation); the planner stops at the value, naming the flag."""
    with pytest.raises(InvalidValue, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_args(str(QWEN), flags)


def test_sane_launch_values_pass() -> None:
    sa = parse_args(
        str(QWEN), ["--tp", "2", "--ep", "2", "--mem-fraction-static", "0.8", "--context-length", "4096"]
    )
    assert sa.tp_size == 2 and sa.mem_fraction_static == 0.8


def test_zero_tp_is_one_line_in_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(
        capsys, "doctor", "--model", str(QWEN), "--gpu", "RTX 4090", "--no-compile", "--tp", "0"
    )
    _one_line_error(rc, err, "--tp-size must be a positive integer (got 0)")
    assert "VERDICT" not in out


def test_suggestions_try_the_neighbouring_tp_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "doctor", "--model", str(QWEN), "--gpu", "L40S", "--gpus", "4", "--no-compile",
                      "--tp", "3")  # fmt: skip
    assert rc == 3 and "32 attention heads are not divisible by the attention TP size 3" in out
    assert "--tp 4 (4 GPUs)" in out and "--tp 2 (2 GPUs)" in out and "no single change" not in out


def test_suggestions_try_an_ep_size_that_divides_tp(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "doctor", "--model", str(QWEN), "--gpu", "L40S", "--gpus", "4", "--no-compile",
                      "--tp", "4", "--ep", "3")  # fmt: skip
    assert rc == 3 and "--ep 3 must divide --tp 4" in out
    assert "1. --ep 4\n     -> OK" in out and "flags: --tp 4 --ep-size 4" in out


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-3", "1e30"])
def test_gpu_mem_is_one_gpus_memory(capsys: pytest.CaptureFixture[str], value: str) -> None:
    rc, _, err = _run(capsys, "doctor", "--model", str(QWEN), "--gpu", "RTX 4090", "--gpu-mem", value)
    _one_line_error(rc, err, "--gpu-mem must be one GPU's memory in GiB")


# ------------------------------------------------------------------------------ config.json values


def _qwen(**changes: Any) -> dict[str, Any]:
    cfg = json.loads((QWEN / "config.json").read_text())
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_experts": -128}, "config.json: num_experts is -128; expected a positive integer"),
        ({"hidden_size": "2048"}, "config.json: hidden_size is '2048'; expected a positive integer"),
        ({"hidden_size": 0}, "config.json: hidden_size is 0; expected a positive integer"),
        ({"num_key_value_heads": True}, "config.json: num_key_value_heads is True"),
        ({"mlp_only_layers": 5}, "config.json: mlp_only_layers is 5; expected a list of layer indices"),
        ({"num_experts_per_tok": 300}, "300 experts per token, more than the 128 experts"),
        ({"num_hidden_layers": 10**12}, "expected at most 100,000"),
    ],
)
def test_bad_config_values_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelConfigError, match=message.replace("(", r"\(")):
        describe(_qwen(**changes))


def test_zero_null_and_integral_floats_still_read() -> None:
    """Configs write 0 or null for "none" and sometimes 2048.0 for 2048: those are not bad values."""
    d = describe(_qwen(n_shared_experts=0, shared_expert_intermediate_size=None, hidden_size=2048.0,
                       sliding_window=-1))  # fmt: skip
    assert d.hidden == 2048 and d.moe is not None and d.moe.shared_experts == 0
    assert d.attention.sliding_window is None


def test_bad_config_value_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_qwen(num_experts=-128)))
    rc, out, err = _run(capsys, "doctor", "--model", str(tmp_path), "--gpu", "RTX 4090")
    _one_line_error(rc, err, "config.json: num_experts is -128; expected a positive integer")
    assert "VERDICT" not in out


# ------------------------------------------------------------------------------ the CLI's own options


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor", "--gpu", ""],
        ["doctor", "--model", str(QWEN), "--gpu", " "],
        ["check", "--gpu", ""],
        ["moe-config", "--E", "8", "--N", "768", "--K", "2048", "--topk", "2", "--dtype", ""],
        ["selftest", "--list", "--gpu", ""],
        ["emulate", "--gpu", ""],
    ],
)
def test_an_empty_value_is_not_a_missing_option(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, _, err = _run(capsys, *argv)
    _one_line_error(rc, err, "was given an empty value")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--json", "--frobnicate", "x"], "unrecognized arguments: --frobnicate x"),
        (["--gpus", "4"], "--gpus needs a model: give the model with --model"),
        (["--model", str(QWEN), "--model-path", str(QWEN)], "give the model once"),
        (["--gpu", "L40S", "--model-path"], "--model-path needs a value"),
    ],
)
def test_doctor_names_what_it_does_not_take(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, _, err = _run(capsys, "doctor", *argv)
    _one_line_error(rc, err, message)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["selftest", "--list", "--gpu", "L40S", "--workers", "0"], "--workers must be at least 1 (got 0)"),
        (["bench", "--model", str(QWEN), "--workers", "-2"], "--workers must be at least 1 (got -2)"),
        (["tune-moe", "--model", str(QWEN), "--budget-s", "nan"], "--budget-s must be positive (got nan)"),
        (["tune-moe", "--model", str(QWEN), "--dtype", ","], "--dtype names no dtype"),
    ],
)
def test_counts_and_budgets_without_a_gpu(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, _, err = _run(capsys, *argv)
    _one_line_error(rc, err, message)


@pytest.mark.parametrize("smem", ["10000000", "232449"])
def test_emulate_refuses_a_cap_that_emulates_nothing(capsys: pytest.CaptureFixture[str], smem: str) -> None:
    rc, out, err = _run(capsys, "emulate", "--smem", smem, "--", "true")
    _one_line_error(rc, err, f"--smem {smem}:")
    assert out == ""


# ------------------------------------------------------------------------------ Ctrl-C and closed pipes


def test_ctrl_c_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sglang_consumer_gpu.cli import doctor

    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor, "collect", interrupted)
    rc, _, err = _run(capsys, "doctor", "--gpu", "RTX 4090")
    assert rc == 130 and err == "sglang-consumer-gpu doctor: interrupted\n"


def test_ctrl_c_in_doctor_model(tmp_path: Path) -> None:
    """The report's case: SIGINT while ``doctor --model`` imports SGLang (an empty launch cache, so it does)."""
    env = _env(SGLANG_CONSUMER_GPU_CACHE_DIR=str(tmp_path))
    proc = subprocess.Popen([*CLI, "doctor", "--model", str(QWEN), "--gpu", "RTX 4090", "--no-compile"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "asking SGLang ... (importing SGLang: ...)"
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=300)
    assert "asking SGLang" in first
    assert proc.returncode == 130 and "Traceback" not in rest, rest
    assert rest.splitlines()[-1] == "sglang-consumer-gpu doctor: interrupted"


MOE_TABLE = [
    "moe-config",
    "--E",
    "8",
    "--N",
    "3584",
    "--K",
    "4096",
    "--topk",
    "2",
    "--gpu",
    "4090",
    "--no-oracle",
]


@pytest.mark.parametrize("argv", [["doctor", "--gpu", "RTX 4090"], MOE_TABLE])
def test_a_closed_stdout_ends_quietly(argv: list[str]) -> None:
    """``doctor | head -1``: the reader is gone before the output is written; exit as SIGPIPE would."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([*CLI, *argv], stdout=write, stderr=subprocess.PIPE, text=True, env=_env(),
                              timeout=300)  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 128 + signal.SIGPIPE and proc.stderr == "", proc.stderr


# ------------------------------------------------------------------------------ caches that cannot be written


def _unset_cache_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, and restored afterwards even when the code under test sets them."""
    for var in ("SGLANG_CACHE_DIR", "TRITON_CACHE_DIR", "TRITON_HOME", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME",
                settings.CACHE_DIR, settings.USER_MOE_CONFIG_DIR):  # fmt: skip
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)


@pytest.fixture
def blocked_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME under which nothing can be created (a regular file: even root cannot write below it),
    and a private temporary directory for the fallback."""
    home = tmp_path / "home"
    home.write_text("")
    _unset_cache_variables(monkeypatch)
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return home


def test_unwritable_caches_move_to_the_temporary_directory(
    blocked_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        caches.ensure_writable_caches()
    root = tmp_path / "tmp" / f"sglang-consumer-gpu-{os.getuid()}"
    for var in ("SGLANG_CACHE_DIR", "TRITON_CACHE_DIR", settings.CACHE_DIR):
        assert Path(os.environ[var]).parent == root, var
        assert caches.writable(Path(os.environ[var]))
    # tuned configs are still looked up where they were
    assert os.environ[settings.USER_MOE_CONFIG_DIR] == str(
        blocked_home / ".cache" / "sglang-consumer-gpu" / "moe_configs"
    )
    (line,) = [r.getMessage() for r in caplog.records]
    assert (
        f"cannot write {blocked_home}/.cache/sglang" in line and "SGLANG_CACHE_DIR, TRITON_CACHE_DIR" in line
    )


def test_writable_caches_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unset_cache_variables(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    caches.ensure_writable_caches()
    assert "SGLANG_CACHE_DIR" not in os.environ and "TRITON_CACHE_DIR" not in os.environ
    assert not (tmp_path / ".triton").exists()  # the check creates nothing


def test_no_usable_temporary_directory_is_one_line(
    blocked_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(blocked_home / "tmp"))
    with pytest.raises(
        ValueError, match=r"cannot write the cache directory .* set SGLANG_CACHE_DIR to a writable"
    ):
        caches.ensure_writable_caches()


def test_doctor_model_with_a_home_nothing_can_be_written_under(tmp_path: Path) -> None:
    """Before: ``import sglang`` points torch's cache under ~/.cache/sglang and dies creating it
    (a 100-line traceback, exit 1, which reads as AT RISK)."""
    home = tmp_path / "home"
    home.write_text("")
    env = _env(HOME=str(home), TMPDIR=str(tmp_path))
    for var in ("SGLANG_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME"):
        env.pop(var, None)
    proc = subprocess.run([*CLI, "doctor", "--model", str(QWEN), "--gpu", "L40S", "--tp", "2", "--no-compile"],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0 and "VERDICT: OK" in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr and "caching under" in proc.stderr


def test_blank_option_check_reads_every_string_option() -> None:
    from sglang_consumer_gpu.cli import blank_option

    blank_option(argparse.Namespace(command="doctor", gpu=None, model="m", json=False))
    with pytest.raises(ValueError, match="--fit-for was given an empty value"):
        blank_option(argparse.Namespace(command="tune-moe", fit_for=""))
