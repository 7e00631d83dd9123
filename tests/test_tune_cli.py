"""``tune-moe`` end to end on the CPU: the command line, the files it writes and what reads them.

The GPU is the fake of tests/_tune_fake.py (compiles are bookkeeping, timings a cost model);
everything else is real: the model reader, the space, the heuristic, SGLang's default on a
virtual RTX 4090, the state, the lock, the writer, the plugin's lookup and SGLang's own loader."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from _tune_fake import FakeBench

from sglang_consumer_gpu import cli
from sglang_consumer_gpu.cli import tune_moe
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe import lookup
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import triton_dir_name
from sglang_consumer_gpu.moe.validate import load_config_file
from sglang_consumer_gpu.tune import bench as bench_mod
from sglang_consumer_gpu.tune.state import output_lock

REPO = Path(__file__).resolve().parents[1]
QWEN30_MODEL = REPO / "tests" / "fixtures" / "models" / "Qwen3-30B-A3B"
RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
BF16_FILE = "E=128,N=768,device_name=NVIDIA_GeForce_RTX_4090.json"
FP8_FILE = "E=128,N=768,device_name=NVIDIA_GeForce_RTX_4090,dtype=fp8_w8a8.json"
GRID = ["--batch-sizes", "1,4,64,1024"]
SGLANG_KEYS = {"BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages"}


class Fakes(list):
    """The fake benches made, in order; ``options`` go to the next one."""

    options: dict


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    """The live GPU is an RTX 4090 and GpuBench is the fake."""
    made = Fakes()
    made.options = {}

    def make(*_: object, **__: object) -> FakeBench:
        made.append(FakeBench(**made.options))
        return made[-1]

    monkeypatch.setattr(tune_moe, "live_gpu", lambda: RTX_4090)
    monkeypatch.setattr(bench_mod, "GpuBench", make)
    return made


def tune(*args: str) -> int:
    return cli.main(["tune-moe", *args])


def test_writes_files_sglang_and_the_plugin_read(fake_gpu, tmp_path: Path, capsys) -> None:
    assert (
        tune("--model", str(QWEN30_MODEL), "--dtype", "bf16", "fp8_w8a8", *GRID, "--output", str(tmp_path))
        == 0
    )
    out = capsys.readouterr().out
    assert "vs SGLang default" in out and f"wrote {tmp_path / BF16_FILE}" in out
    for name, dtype in ((BF16_FILE, None), (FP8_FILE, "fp8_w8a8")):
        doc = json.loads((tmp_path / name).read_text())
        assert [int(k) for k in doc] == [1, 4, 64, 1024]  # SGLang does int(key) on every key
        assert all(set(v) == SGLANG_KEYS for v in doc.values())
        configs = load_config_file(tmp_path / name, dtype=dtype, block_shape=None, spec=RTX_4090)
        assert sorted(configs) == [1, 4, 64, 1024]
        record = json.loads(lookup.tuning_record_path(tmp_path / name).read_text())
        assert record["triton"] and record["tuned_for"] == RTX_4090.name and len(record["report"]) == 4
    assert not list(tmp_path.glob("*_down.json"))  # the fake gives a split no gain
    assert not list(tmp_path.glob(".tune-moe/*.state.json"))  # removed once the file is written
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_default_output_is_what_the_lookup_reads_first(fake_gpu, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", str(tmp_path))
    lookup.clear_cache()
    assert tune("--E", "128", "--N", "768", "--K", "2048", "--topk", "8", *GRID) == 0
    path = tmp_path / triton_dir_name() / BF16_FILE
    assert path.is_file()
    choice = lookup.choose(64, MoeShape(128, 768, 2048, 8), RTX_4090)
    assert (choice.source, choice.path) == ("user", str(path))
    assert choice.config == json.loads(path.read_text())["64"]
    lookup.clear_cache()


def test_twice_gives_the_same_file_and_an_interrupted_run_resumes(fake_gpu, tmp_path: Path, capsys) -> None:
    args = ("--E", "128", "--N", "768", "--K", "2048", "--topk", "8", *GRID)
    assert tune(*args, "--output", str(tmp_path / "a")) == 0
    assert tune(*args, "--output", str(tmp_path / "a")) == 0
    assert tune(*args, "--output", str(tmp_path / "b")) == 0
    first = (tmp_path / "a" / BF16_FILE).read_text()
    assert first == (tmp_path / "b" / BF16_FILE).read_text()
    whole = fake_gpu[-1].timed

    fake_gpu.options["stop_after"] = len(whole) // 2
    assert tune(*args, "--output", str(tmp_path / "c")) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert not (tmp_path / "c" / BF16_FILE).exists()  # nothing half-written
    assert list((tmp_path / "c" / ".tune-moe").glob("*.state.json"))
    del fake_gpu.options["stop_after"]
    assert tune(*args, "--output", str(tmp_path / "c")) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (tmp_path / "c" / BF16_FILE).read_text() == first
    assert len(fake_gpu[-1].timed) == len(whole) - len(fake_gpu[-2].timed)


def test_a_second_tuner_on_the_same_output_refuses(fake_gpu, tmp_path: Path, capsys) -> None:
    with output_lock([tmp_path / BF16_FILE]):
        assert tune("--E", "128", "--N", "768", "--K", "2048", "--topk", "8", "--output", str(tmp_path)) == 3
    err = capsys.readouterr().err
    assert "another tune-moe" in err and "Traceback" not in err
    assert not fake_gpu  # nothing was compiled or timed


def test_fit_for_names_the_file_for_that_gpu(fake_gpu, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tune_moe, "live_gpu", lambda: find_gpu("H200"))
    args = ("--E", "128", "--N", "768", "--K", "2048", "--topk", "8", *GRID, "--output", str(tmp_path))
    assert tune(*args) == 2  # a data-center GPU is refused without --fit-for
    assert tune(*args, "--fit-for", "RTX 4090") == 0
    record = json.loads(lookup.tuning_record_path(tmp_path / BF16_FILE).read_text())
    assert (record["tuned_for"], record["timed_on"]) == (RTX_4090.name, find_gpu("H200").name)


def _dense_model(tmp_path: Path) -> Path:
    cfg = json.loads((QWEN30_MODEL / "config.json").read_text())
    for k in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "decoder_sparse_step"):
        cfg.pop(k, None)
    cfg.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3")
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "dense"


SHAPE = ["--E", "128", "--N", "768", "--K", "2048", "--topk", "8"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}"], "no config.json"),
        (["--model", "{dense}"], "not a MoE model"),
        (["--E", "128", "--N", "768"], "missing --K --topk"),
        ([*SHAPE, "--dtype", "int4_w4a16"], "another kernel"),
        ([*SHAPE, "--dtype", "fp9"], "unknown MoE dtype"),
        ([*SHAPE, "--dtype", "bf16", "fp16"], "same SGLang config"),
        ([*SHAPE, "--batch-sizes", "1,x"], "not an integer"),
        ([*SHAPE, "--dtype", "fp8_w8a8", "--fit-for", "RTX 3090"], "fp8"),
        ([*SHAPE, "--output", "{file}/sub"], "cannot create"),
        ([*SHAPE, "--fit-for", "RTX 9999"], "RTX 9999"),
        ([*SHAPE, "--tp", "0"], "--tp must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(fake_gpu, tmp_path: Path, capsys, args, message) -> None:
    (tmp_path / "file").write_text("x")
    fill = {"tmp": str(tmp_path), "dense": str(_dense_model(tmp_path)), "file": str(tmp_path / "file")}
    assert tune(*(a.format(**fill) for a in args)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not fake_gpu


def test_no_gpu_is_a_clear_message(tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert tune(*SHAPE, "--output", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU visible" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("where", "record", "warns"),
    [
        ("triton_3_1_0", None, True),
        ("{installed}", None, False),
        (".", "3.1.0", True),
        (".", "{installed}", False),
        (".", None, False),  # a flat file with no record: the version is unknown
    ],
)
def test_lookup_warns_once_for_a_file_tuned_under_another_triton(
    tmp_path: Path, monkeypatch, caplog, where: str, record: str | None, warns: bool
) -> None:
    installed = triton_dir_name().removeprefix("triton_").replace("_", ".")
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", str(tmp_path))
    folder = tmp_path / where.format(installed=triton_dir_name())
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 4,
           "num_stages": 4}  # fmt: skip
    (folder / BF16_FILE).write_text(json.dumps({"1": cfg, "64": cfg}))
    if record:
        side = lookup.tuning_record_path(folder / BF16_FILE)
        side.parent.mkdir(parents=True)
        side.write_text(json.dumps({"triton": record.format(installed=installed)}))
    lookup.clear_cache()
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        for M in (1, 64, 2):
            assert lookup.choose(M, MoeShape(128, 768, 2048, 8), RTX_4090).source == "user"
        lookup._find.cache_clear()  # the file looked up again: still one warning
        lookup.choose(1, MoeShape(128, 768, 2048, 8), RTX_4090)
    hits = [r for r in caplog.records if "tuned under Triton" in r.getMessage()]
    assert len(hits) == (1 if warns else 0)
    lookup.clear_cache()


def test_ctrl_c_during_a_compile_wave_leaves_a_state_the_rerun_resumes(tmp_path: Path) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C) while compile workers are busy:
    the workers ignore it, the tuner saves its state and exits 130, no config is recorded as a
    compiler crash, and the same command then resumes and writes the file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = Path(__file__).parent / "_tune_interrupted.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)])}
    out, marker = tmp_path / "out", tmp_path / "compiling"
    cmd = [sys.executable, str(script), str(out), str(marker)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate(timeout=60)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again" in err and "Traceback" not in err
    states = list((out / ".tune-moe").glob("*.state.json"))
    assert len(states) == 1 and not (out / BF16_FILE).exists()
    assert "crashed" not in states[0].read_text()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout
    assert load_config_file(out / BF16_FILE, dtype=None, block_shape=None, spec=RTX_4090)


def test_an_error_raised_while_ctrl_c_unwinds_still_reads_as_an_interrupt(
    fake_gpu, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """The KeyboardInterrupt can land inside the process pool's lock handling, whose cleanup then
    raises RuntimeError("release unlocked lock") (seen on the H200): still exit 130 with the
    resume hint, and the state is on disk."""

    class LockTrouble(FakeBench):
        def time(self, M: int, key: str, skip: float | None):  # type: ignore[override]
            try:
                raise KeyboardInterrupt
            finally:
                raise RuntimeError("release unlocked lock")

    monkeypatch.setattr(bench_mod, "GpuBench", lambda *_, **__: LockTrouble())
    out = tmp_path / "out"
    assert tune("--E", "128", "--N", "768", "--K", "2048", "--topk", "8", *GRID, "--output", str(out)) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert list((out / ".tune-moe").glob("*.state.json"))
