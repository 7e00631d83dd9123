"""CPU tests of the end-to-end harness's scripts: the device-side installer of the
carried SGLang (idempotent; the plugin's hook and entry point work from a
PYTHONPATH install) and run_e2e.py's log parsing and logprob comparison."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(rel: str):
    spec = importlib.util.spec_from_file_location(Path(rel).stem, REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run_e2e = _load("scripts/e2e/run_e2e.py")

# Shaped like the unpatched server's log on the H200 (2026-12-01): the logger's one-line
# report comes first, the traceback with the launching frame after it.
UNPATCHED_LOG = """\
[09:04:30] Load weight end. elapsed=1.36 s, type=Qwen3MoeForCausalLM, avail mem=134.21 GB, mem usage=4.91 GB.
[09:04:31] Capture target prefill CUDA graph begin. backend=breakable, num_tokens=[4, 8, 8192]
Capturing num tokens (num_tokens=8192 avail_mem=11.51 GB):   0%|          | 0/58 [00:00<?, ?it/s]
[09:04:32] Using MoE kernel config from /tmp/site/sglang/.../E=128,N=768,device_name=NVIDIA_H200.json.
[09:04:32] OutOfResources: out of resource: shared memory, Required: 196608, Hardware limit: 101376. Reducing block sizes or `num_stages` may help.
[09:04:32] Scheduler hit an exception: Traceback (most recent call last):
  File "/tmp/site/sglang/kernels/ops/moe/fused_moe_triton_kernels.py", line 913, in invoke_fused_moe_kernel
    fused_moe_kernel[grid](
  File "/opt/torch/.venv/lib/python3.12/site-packages/triton/runtime/jit.py", line 743, in run
    launch_metadata = kernel.launch_metadata(grid, stream, *bound_args.values())
triton.runtime.errors.OutOfResources: out of resource: shared memory, Required: 196608, Hardware limit: 101376. Reducing block sizes or `num_stages` may help.
"""


def test_failure_names_kernel_numbers_and_phase() -> None:
    f = run_e2e.failure_of(UNPATCHED_LOG)
    assert f["kind"] == "OutOfResources"
    assert (f["required"], f["hardware_limit"]) == (196_608, 101_376)
    assert f["kernel"] == "fused_moe_kernel" and "invoke_fused_moe_kernel" in f["sglang_frame"]
    assert f["phase"] == "CUDA graph capture" and f["capturing"] == 8192


def test_failure_phase_start_up_and_first_request() -> None:
    oor = "OutOfResources: out of resource: shared memory, Required: 1, Hardware limit: 1\n"
    assert run_e2e.failure_of("Load weight end.\n" + oor)["phase"] == "start-up"
    assert run_e2e.failure_of("Capture x graph begin\nCapture x graph end\nready to roll\n" + oor)["phase"] == "first request"
    assert run_e2e.failure_of("all fine\n") is None


def test_trim_log_drops_progress_bars_keeps_results() -> None:
    lines = [f"Capturing num tokens (num_tokens={i} avail_mem=9 GB): 5%| | 1/58 [00:01<00:02, 1.5it/s]" for i in range(500)]
    text = "\n".join(["head"] * 70 + lines + ["Load weight end. mem usage=4.91 GB"] + ["x"] * 200 + ["tail"])
    out = run_e2e.trim_log(text)
    assert "Capturing" not in out and "mem usage=4.91 GB" in out and out.endswith("tail")


def _resp(ids: list[int], lps: list[float], out: list[tuple[int, float, float, float]]) -> dict:
    """A /generate response: prompt ids with logprobs; output (id, logprob, top1, top2)."""
    return {
        "input_token_logprobs": [[None, ids[0], None]] + [[lp, i, None] for i, lp in zip(ids[1:], lps, strict=True)],
        "input_top_logprobs": [None] + [[[lp, i, None], [lp - 2.0, 0, None]] for i, lp in zip(ids[1:], lps, strict=True)],
        "output_token_logprobs": [[lp, i, None] for i, lp, _, _ in out],
        "output_top_logprobs": [[[t1, i, None], [t2, 0, None]] for i, _, t1, t2 in out],
    }


def test_compare_stats_divergence_and_margin_rule() -> None:
    ref = _resp([5, 6, 7], [-1.0, -2.0], [(9, -1.0, -1.0, -3.0), (10, -0.5, -0.5, -0.6), (11, -1.0, -1.0, -4.0)])
    plug = _resp([5, 6, 7], [-1.01, -2.02], [(9, -1.03, -1.03, -3.0), (12, -0.55, -0.55, -0.6), (11, -1.0, -1.0, -4.0)])
    res = run_e2e.compare([plug], [ref], bound=0.5)
    pre, dec = res["prefill_token_logprobs"], res["decode_token_logprobs"]
    assert pre["n"] == 2 and abs(pre["max_abs"] - 0.02) < 1e-9 and pre["above_bound"] == 0
    assert dec["n"] == 1 and abs(dec["max_abs"] - 0.03) < 1e-9  # stops at the divergence (10 vs 12)
    assert res["decode_prompts_diverged"] == 1
    g = res["greedy_where_margin_exceeds_bound"]
    # 2 prompt positions (margin 2.0) + decode step 0 (margin 2.0) count; step 1's margin 0.1 is below the bound
    assert (g["agree"], g["of"], g["skipped_low_margin"]) == (3, 3, 1)


def test_logprob_bound_follows_its_formula() -> None:
    b = run_e2e.logprob_bound(4)
    assert b["rounding_points"] == 58
    assert abs(b["bound"] - 3 * 2 * 2**-9 * 58**0.5 * 4.0 * 2**0.5) < 1e-3


def _fake_carry(root: Path) -> Path:
    """A carry with one module in its archive, in prepare_sglang.py's layout."""
    carry = root / "carry"
    carry.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"VALUE = 17\n"
        info = tarfile.TarInfo("carried_probe_mod.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = carry / "site.tar.xz"
    archive.write_bytes(lzma.compress(buf.getvalue()))
    manifest = {"archive": archive.name, "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                "installed_bytes": 11, "wheels": [], "stand_ins": []}
    (carry / "MANIFEST.json").write_text(json.dumps(manifest))
    return carry


def test_installer_is_idempotent_and_arms_the_plugin_hook(tmp_path: Path) -> None:
    carry, target = _fake_carry(tmp_path), tmp_path / "site"
    cmd = [sys.executable, str(REPO / "scripts/device/install_sglang.py"), "--carry", str(carry), "--target", str(target)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "unpacked" in first.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in first.stdout.splitlines())
    pythonpath = exports["PYTHONPATH"].strip('"').split("$")[0]
    assert pythonpath == f"{target}:{REPO}"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "already holds" in second.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    env["PYTHONPATH"] = pythonpath
    # -S: no site-packages and no .pth files (the venv's own plugin install stays out); then the
    # start-up import of sitecustomize that -S skipped, done by hand
    probe = (
        "import sys; assert 'sglang_consumer_gpu._pth' not in sys.modules; import sitecustomize;"
        "import json; from importlib import metadata; import carried_probe_mod as m;"
        "print(json.dumps({'value': m.VALUE, 'hook': 'sglang_consumer_gpu._pth' in sys.modules,"
        "'eps': [e.value for e in metadata.entry_points(group='sglang.srt.plugins')]}))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["value"] == 17 and got["hook"] is True
    assert "sglang_consumer_gpu.activation:entry_point" in got["eps"]


def test_installer_refuses_a_corrupt_archive(tmp_path: Path) -> None:
    carry = _fake_carry(tmp_path)
    (carry / "site.tar.xz").write_bytes(b"not the archive")
    out = subprocess.run([sys.executable, str(REPO / "scripts/device/install_sglang.py"), "--carry", str(carry),
                          "--target", str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "sha256" in out.stderr and not (tmp_path / "site").exists()
