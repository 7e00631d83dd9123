"""End-to-end acceptance run: a real ``python -m sglang.launch_server`` on an emulated consumer GPU.

``--emulate-gpu NAME`` runs every stage under the arch-faithful emulation of that catalog GPU
(``SGLANG_CONSUMER_GPU_EMULATE_GPU``: its code generation, limit, residency and identity;
docs/emulation.md); without it, under the shared-memory limit ``--smem`` alone (sm_90 code).

Runs on the device machine after ``eval "$(python3 scripts/device/install_sglang.py)"``
(SGLang 0.5.17 carried). Each stage has its own timeout; results go to
``$OUT/e2e_results.json`` (rewritten after every stage, so a cut-off run keeps
what it finished) and trimmed server logs to ``$OUT/e2e_logs.txt``.

Stages (``--stages``, comma-separated, default all, in this order):

``model``         make the random-weight Qwen3-MoE checkpoint (scripts/e2e/make_model.py; reused if present)
``unpatched``     emulated, plugin off (``SGLANG_CONSUMER_GPU=0``), SGLang as installed: where it fails
                  (kernel, Required, Hardware limit; start-up, graph capture or first request)
``plugin``        emulated, plugin on, same command: starts, captures CUDA graphs, serves the fixed prompt
                  set (native ``/generate``, token ids in, logprobs out; one OpenAI ``/v1/completions``
                  with token ids), plugin log lines
``reference``     no emulation, plugin off: the same prompts (on ``--reference-model`` when given: the
                  bf16 twin of an FP8 checkpoint, make_model.py ``--twin``)
``compare``       plugin vs reference logprobs against the bf16 bound (see ``logprob_bound``)
``bench``         ``sglang.bench_one_batch`` (prefill and decode, batch 1/8/32/64), emulated, tuned file
                  hidden (``SGLANG_MOE_CONFIG_DIR`` = an empty config tree): plugin on vs SGLang alone,
                  interleaved (plugin, SGLang, plugin, SGLang, ``--bench-rounds``)
``deterministic`` emulated, plugin on, ``--enable-deterministic-inference``: what happens

Every server stage also records SGLang's memory lines (weights, KV cache, token
budget) for the planner. ``--stages`` lets a call run a subset; ``compare``
reads the responses the other stages left in ``--work``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV_SMEM = "SGLANG_CONSUMER_GPU_EMULATE_SMEM"  # sglang_consumer_gpu.settings.EMULATE_SMEM
ENV_GPU = "SGLANG_CONSUMER_GPU_EMULATE_GPU"  # sglang_consumer_gpu.settings.EMULATE_GPU
ENV_SHOWN = (ENV_GPU, ENV_SMEM, "SGLANG_CONSUMER_GPU", "SGLANG_MOE_CONFIG_DIR")
STAGES = ("model", "unpatched", "plugin", "reference", "compare", "bench", "deterministic")
SERVER_FLAGS = (
    "--attention-backend", "triton",
    "--sampling-backend", "pytorch",  # flashinfer's sampling kernels would JIT-compile; its sources are not carried
    "--cuda-graph-max-bs-decode", "64",
    "--random-seed", "0",
    "--log-level", "info",
)
BENCH_BATCHES = (1, 8, 32, 64)

MEMORY_PATTERNS = (
    r"Load weight (begin|end)",
    r"mem usage=",
    r"avail mem=",
    r"max_total_num_tokens=",
    r"KV Cache|KV cache|KV size|K size",
    r"Capture .*(begin|end)",
)
PLUGIN_PATTERN = r"sglang[-_]consumer[-_]gpu"
PROGRESS = re.compile(r"^\s*(Capturing|Multi-thread loading|\s*\d+%\|)|it/s\]\s*$|s/it\]\s*$")
OOR = re.compile(r"OutOfResources: out of resource: shared memory, Required: (\d+), Hardware limit: (\d+)")


class Run:
    """The results document, written after every stage."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.data: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": {}}
        self.logs: list[str] = []

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "e2e_results.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.out / "e2e_results.json")
        (self.out / "e2e_logs.txt").write_text("\n".join(self.logs) + "\n")

    def stage(self, name: str, result: dict) -> None:
        self.data["stages"][name] = result
        self.save()
        print(f"[e2e] {name}: {json.dumps(_short(result))[:600]}", flush=True)


def _short(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("responses", "memory_lines", "plugin_lines", "records")}


def env_for(emulate: str | int | None, plugin: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a stage: ``emulate`` a catalog GPU name (arch-faithful), a byte cap, or None."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_SHOWN}
    env["PYTHONUNBUFFERED"] = "1"
    env["SGLANG_CONSUMER_GPU"] = "1" if plugin else "0"
    if isinstance(emulate, str):
        env[ENV_GPU] = emulate
    elif emulate is not None:
        env[ENV_SMEM] = str(emulate)
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trim_log(text: str, head: int = 60, tail: int = 120) -> str:
    """Head and tail of a log plus every line the results refer to (tqdm progress lines dropped)."""
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if not PROGRESS.search(ln)]
    if len(lines) <= head + tail:
        return text
    keep = re.compile("|".join((*MEMORY_PATTERNS, PLUGIN_PATTERN, "OutOfResources", "Error", "Traceback")))
    middle = [ln for ln in lines[head:-tail] if keep.search(ln)]
    return "\n".join([*lines[:head], f"... ({len(lines) - head - tail} lines, {len(middle)} kept) ...", *middle, *lines[-tail:]])


def grep(text: str, patterns: tuple[str, ...] | str) -> list[str]:
    rx = re.compile("|".join(patterns) if isinstance(patterns, tuple) else patterns)
    return [ln.strip()[:400] for ln in text.splitlines() if rx.search(ln)]


def failure_of(text: str) -> dict | None:
    """The first OutOfResources in a log: numbers, the SGLang frame that launched it, and the phase."""
    hits = list(OOR.finditer(text))
    if not hits:
        errors = grep(text, r"^\w*(Error|Exception)\b|Traceback|Exception:")
        return {"kind": "other", "lines": errors[-8:]} if errors else None
    m = hits[0]
    before = text[: hits[-1].start()].splitlines()  # the traceback precedes the last report
    frames = [i for i, ln in enumerate(before) if re.search(r'File ".*/(sglang|sgl_kernel)/', ln)]
    frame = before[frames[-1]].strip() if frames else None
    code = before[frames[-1] + 1].strip() if frames and frames[-1] + 1 < len(before) else None
    kernel = None
    for ln in reversed(before[-80:]):
        km = re.search(r"(\w+)\[(grid|\(|[a-z_]+\])", ln)
        if km and not ln.lstrip().startswith("File"):
            kernel = km.group(1)
            break
    shapes = re.findall(r"Capturing (?:num tokens|batches) \((?:num_tokens|bs)=(\d+)", text[: m.start()])
    return {
        "kind": "OutOfResources",
        "capturing": int(shapes[-1]) if shapes else None,  # graph shape being captured (tokens or batch)
        "required": int(m.group(1)),
        "hardware_limit": int(m.group(2)),
        "kernel": kernel,
        "sglang_frame": frame,
        "code": code,
        "phase": phase_of(text, m.start()),
        "line": m.group(0),
    }


def phase_of(text: str, pos: int) -> str:
    before = text[:pos]
    if "ready to roll" in before or "POST /generate" in before:
        return "first request"
    begins = [m.end() for m in re.finditer(r"Capture .*(?:graph|Graph).* begin", before)]
    ends = [m.end() for m in re.finditer(r"Capture .*(?:graph|Graph).* end", before)]
    if begins and (not ends or begins[-1] > ends[-1]):
        return "CUDA graph capture"
    return "start-up"


class Server:
    def __init__(self, model: Path, env: dict[str, str], log: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.log = log
        cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(model), "--host", "127.0.0.1",
               "--port", str(self.port), *SERVER_FLAGS, *extra]
        self.cmd = cmd
        self.fh = log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.t0 = time.time()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        self.fh.flush()
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> tuple[bool, float]:
        import requests

        while time.time() - self.t0 < timeout:
            if self.proc.poll() is not None:
                return False, time.time() - self.t0
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200 and "ready to roll" in self.text():
                    return True, time.time() - self.t0
            except requests.RequestException:
                pass
            time.sleep(1.0)
        return False, time.time() - self.t0

    def stop(self) -> None:
        stop_group(self.proc)
        self.fh.close()


def stop_group(proc: subprocess.Popen) -> None:
    """End the process group we started (the launcher and the scheduler/detokenizer it spawned)
    and wait until none of it is left, so the next stage finds the GPU memory free."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + 30
    while time.time() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


def prompts(vocab: int, seed: int = 0) -> list[list[int]]:
    """The fixed prompt set: 12 token-id prompts of 17..1000 tokens."""
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(n)] for n in (17, 33, 64, 100, 128, 200, 256, 300, 400, 512, 700, 1000)]


def query(url: str, ids: list[list[int]], max_new: int, timeout: float) -> dict:
    import requests

    body = {
        "input_ids": ids,
        "sampling_params": {"temperature": 0.0, "max_new_tokens": max_new, "ignore_eos": True},
        "return_logprob": True,
        "logprob_start_len": 0,
        "top_logprobs_num": 2,
    }
    t0 = time.time()
    r = requests.post(url + "/generate", json=body, timeout=timeout)
    r.raise_for_status()
    out = r.json()
    responses = []
    for item in out if isinstance(out, list) else [out]:
        mi = item["meta_info"]
        responses.append({k: mi.get(k) for k in ("input_token_logprobs", "output_token_logprobs",
                                                 "input_top_logprobs", "output_top_logprobs")})
    openai = requests.post(url + "/v1/completions", timeout=timeout, json={
        "model": "default", "prompt": ids[0], "max_tokens": 4, "temperature": 0, "logprobs": 2})
    oa = {"status": openai.status_code}
    if openai.ok:
        choice = openai.json()["choices"][0]
        oa.update(text=choice.get("text"), token_logprobs=(choice.get("logprobs") or {}).get("token_logprobs"))
    else:
        oa["body"] = openai.text[:300]
    return {"responses": responses, "seconds": round(time.time() - t0, 2), "openai_completions": oa}


def batch_invariance(url: str, batched: list[dict], ids: list[list[int]], max_new: int, timeout: float,
                     n: int = 4) -> dict:
    """Each of the first ``n`` prompts served alone vs inside the batch of all prompts:
    with --enable-deterministic-inference their logprobs must be bitwise equal."""
    equal = []
    for i in range(n):
        alone = query(url, [ids[i]], max_new, timeout)["responses"][0]
        equal.append(all(alone[k] == batched[i][k] for k in ("input_token_logprobs", "output_token_logprobs")))
    return {"prompts": n, "bitwise_equal": sum(equal), "per_prompt": equal}


def server_stage(run: Run, name: str, model: Path, env: dict, args: argparse.Namespace, work: Path,
                 extra: tuple[str, ...] = (), ask: bool = True, invariance: bool = False) -> dict:
    log = work / f"{name}_server.log"
    (work / f"{name}_responses.json").unlink(missing_ok=True)  # compare must never read an older run's
    srv = Server(model, env, log, (*extra, *args.extra_flags))
    result: dict[str, Any] = {"command": " ".join(srv.cmd[1:]), "env": {k: env[k] for k in ENV_SHOWN if k in env}}
    try:
        ready, secs = srv.wait_ready(args.server_timeout)
        result.update(ready=ready, startup_seconds=round(secs, 1))
        if ready and ask:
            try:
                q = query(srv.url, prompts(args.vocab), args.max_new_tokens, args.request_timeout)
                result.update(served=True, request_seconds=q["seconds"], openai_completions=q["openai_completions"])
                (work / f"{name}_responses.json").write_text(json.dumps(q["responses"]))
                result["responses_file"] = str(work / f"{name}_responses.json")
                if invariance:
                    result["batch_invariance"] = batch_invariance(
                        srv.url, q["responses"], prompts(args.vocab), args.max_new_tokens, args.request_timeout
                    )
            except Exception as exc:
                result.update(served=False, request_error=repr(exc)[:400])
                time.sleep(2)  # let the server log the failure
    finally:
        srv.stop()
        text = srv.text() if not srv.fh.closed else log.read_text(errors="replace")
        result["exit_code"] = srv.proc.returncode
        result["failure"] = failure_of(text) if not result.get("served") else None
        result["cuda_graph_captured"] = bool(re.search(r"Capture .*(graph|Graph).* end", text))
        result["memory_lines"] = grep(text, MEMORY_PATTERNS)
        result["plugin_lines"] = grep(text, PLUGIN_PATTERN)[:40]
        result["moe_config_lines"] = grep(text, r"MoE kernel config|MoE config")[:10]
        run.logs += [f"===== {name} server log (trimmed) =====", trim_log(text)]
    return result


def logprob_bound(layers: int, logit_std: float = 4.0) -> dict:
    """Bound on |logprob(plugin) - logprob(reference)| per token, from bf16 rounding.

    Both runs accumulate in fp32 inside each tile, so a different tile only reorders
    fp32 sums (changes far below bf16 resolution); what differs is which values
    round the other way when each kernel's output is stored in bf16: at most one
    bf16 ulp, 2u relative with u = 2^-9. Taking every one of R rounding points on
    the path as an independent +-2u relative change (upper estimate: most do not
    flip), the relative change of the final hidden state is <= 2u*sqrt(R); logits
    of std s move by that times s; a logprob is a logit minus logsumexp, so sqrt(2)
    more. Three sigmas of that is the bound. R = 14 rounding points per layer
    (q/k/v, q/k norm, attention, o_proj, residual, norm, router, gate/up,
    SiLU*mul, down, expert sum, residual) + final norm + LM head.
    """
    u = 2.0**-9
    rounding_points = 14 * layers + 2
    sigma = 2 * u * math.sqrt(rounding_points) * logit_std * math.sqrt(2)
    return {"bound": round(3 * sigma, 4), "sigma": round(sigma, 4), "u": u, "rounding_points": rounding_points,
            "logit_std": logit_std, "formula": "3 * 2u * sqrt(R) * logit_std * sqrt(2)"}


def _lp(entry: Any) -> tuple[float | None, int | None]:
    return (entry[0], entry[1]) if entry else (None, None)


def compare(plugin: list[dict], ref: list[dict], bound: float) -> dict:
    prefill, decode, greedy_ok, greedy_n, greedy_low = [], [], 0, 0, 0
    diverged = 0
    for p, r in zip(plugin, ref, strict=True):
        for a, b in zip(p["input_token_logprobs"], r["input_token_logprobs"], strict=True):
            (la, ta), (lb, tb) = _lp(a), _lp(b)
            if la is not None and lb is not None and ta == tb:
                prefill.append(la - lb)
        # next-token argmax at every prompt position and every agreed decode step
        tops = list(zip(p["input_top_logprobs"] or [], r["input_top_logprobs"] or [], strict=False))
        agreed = True
        for a, b, ta, tb in zip(p["output_token_logprobs"], r["output_token_logprobs"],
                                p["output_top_logprobs"] or [], r["output_top_logprobs"] or [], strict=False):
            if not agreed:
                break
            (la, ida), (lb, idb) = _lp(a), _lp(b)
            tops.append((ta, tb))
            if ida != idb:
                agreed = False
                diverged += 1
                continue
            decode.append(la - lb)
        for ta, tb in tops:
            if not ta or not tb or len(tb) < 2:
                continue
            margin = tb[0][0] - tb[1][0]
            if margin > bound:
                greedy_n += 1
                greedy_ok += ta[0][1] == tb[0][1]
            else:
                greedy_low += 1

    def stats(d: list[float]) -> dict:
        if not d:
            return {"n": 0}
        a = sorted(abs(x) for x in d)
        return {"n": len(d), "max_abs": round(a[-1], 5), "p99_abs": round(a[int(0.99 * (len(a) - 1))], 5),
                "median_abs": round(a[len(a) // 2], 5), "mean": round(sum(d) / len(d), 6),
                "within_bound": sum(x <= bound for x in a), "above_bound": sum(x > bound for x in a)}

    return {"prefill_token_logprobs": stats(prefill), "decode_token_logprobs": stats(decode),
            "decode_prompts_diverged": diverged,
            "greedy_where_margin_exceeds_bound": {"agree": greedy_ok, "of": greedy_n, "skipped_low_margin": greedy_low}}


def bench_stage(run: Run, name: str, model: Path, env: dict, args: argparse.Namespace, work: Path) -> dict:
    result_file = work / f"{name}.jsonl"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "sglang.bench_one_batch", "--model-path", str(model),
           "--attention-backend", "triton", "--sampling-backend", "pytorch", *args.extra_flags,
           "--batch-size", *map(str, BENCH_BATCHES * 2),  # first pass compiles and warms, the second is kept
           "--input-len", str(args.bench_input_len), "--output-len", str(args.bench_output_len),
           "--result-filename", str(result_file)]
    log = work / f"{name}.log"
    t0 = time.time()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=args.bench_timeout)
        stop_group(proc)  # also any child left behind
    text = log.read_text(errors="replace")
    run.logs += [f"===== {name} (bench_one_batch) log (trimmed) =====", trim_log(text)]
    records = [json.loads(ln) for ln in result_file.read_text().splitlines()] if result_file.is_file() else []
    last = {r["batch_size"]: r for r in records}  # the second pass
    return {"command": " ".join(cmd[1:]), "env": {k: env[k] for k in ENV_SHOWN if k in env},
            "exit_code": proc.returncode, "seconds": round(time.time() - t0, 1),
            "failure": failure_of(text) if proc.returncode else None,
            "by_batch": {bs: {"prefill_tok_s": r.get("prefill_throughput"), "decode_tok_s": r.get("median_decode_throughput"),
                              "prefill_s": r.get("prefill_latency"), "decode_s": r.get("median_decode_latency")}
                         for bs, r in sorted(last.items())},
            "plugin_lines": grep(text, PLUGIN_PATTERN)[:40], "memory_lines": grep(text, MEMORY_PATTERNS)}


def ratios(plugin: list[dict], base: list[dict]) -> dict:
    """Per batch size and phase: plugin / SGLang throughput of each interleaved pair, and their geometric mean."""
    out = {}
    for bs in BENCH_BATCHES:
        row = {}
        for k in ("prefill_tok_s", "decode_tok_s"):
            pairs = [p["by_batch"][bs][k] / b["by_batch"][bs][k] for p, b in zip(plugin, base, strict=False)
                     if p["by_batch"].get(bs, {}).get(k) and b["by_batch"].get(bs, {}).get(k)]
            row[k] = round(math.prod(pairs) ** (1 / len(pairs)), 3) if pairs else None
            row[f"{k}_pairs"] = [round(x, 3) for x in pairs]
        out[bs] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/e2e")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/e2e_work"), help="logs and responses kept between calls")
    ap.add_argument("--model", type=Path, default=Path("/tmp/qwen3moe-e2e"))
    ap.add_argument("--reference-model", type=Path, help="the reference stage's model (default: --model)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--smem", type=int, default=101_376, help="the limit-only emulation's cap (without --emulate-gpu)")
    ap.add_argument("--emulate-gpu", help='a catalog GPU to emulate arch-faithfully, e.g. "NVIDIA GeForce RTX 4090"')
    ap.add_argument("--bench-rounds", type=int, default=2, help="interleaved plugin/SGLang pairs in the bench stage")
    ap.add_argument("--vocab", type=int, default=32768, help="must match make_model.py's")
    ap.add_argument("--layers", type=int, default=4, help="must match make_model.py's")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--server-timeout", type=float, default=300, help="start-up limit per server stage (s)")
    ap.add_argument("--request-timeout", type=float, default=90)
    ap.add_argument("--bench-timeout", type=float, default=300, help="limit per bench_one_batch run (s)")
    ap.add_argument("--extra-flags", default="", help="more launch_server/bench_one_batch flags for every stage, "
                    "e.g. '--cuda-graph-backend-prefill disabled' to skip prefill CUDA graphs")
    ap.add_argument("--bench-input-len", type=int, default=512)
    ap.add_argument("--bench-output-len", type=int, default=32)
    args = ap.parse_args()
    args.extra_flags = tuple(args.extra_flags.split())
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    args.work.mkdir(parents=True, exist_ok=True)
    run = Run(args.out)
    cap: str | int = args.emulate_gpu or args.smem
    run.data.update(emulation=cap, stages_requested=stages, model=str(args.model),
                    extra_flags=list(args.extra_flags))
    t_all = time.time()
    model = args.model

    if "model" in stages:
        t0 = time.time()
        p = subprocess.run([sys.executable, str(REPO / "scripts/e2e/make_model.py"), "--out", str(model),
                            "--layers", str(args.layers), "--vocab", str(args.vocab)],
                           capture_output=True, text=True, timeout=300)
        run.stage("model", {"exit_code": p.returncode, "seconds": round(time.time() - t0, 1),
                            "stdout": p.stdout.strip()[-500:], "stderr": p.stderr.strip()[-1500:]})
    if "unpatched" in stages:
        run.stage("unpatched", server_stage(run, "unpatched", model, env_for(cap, plugin=False), args, args.work))
    if "plugin" in stages:
        run.stage("plugin", server_stage(run, "plugin", model, env_for(cap, plugin=True), args, args.work))
    if "reference" in stages:
        reference = args.reference_model or model
        run.stage("reference", server_stage(run, "reference", reference, env_for(None, plugin=False), args, args.work))
    if "compare" in stages:
        files = {n: args.work / f"{n}_responses.json" for n in ("plugin", "reference")}
        bound = logprob_bound(args.layers)
        if all(f.is_file() for f in files.values()):
            res = compare(json.loads(files["plugin"].read_text()), json.loads(files["reference"].read_text()), bound["bound"])
            run.stage("compare", {"bound": bound, **res})
        else:
            run.stage("compare", {"bound": bound, "skipped": f"missing {[str(f) for f in files.values() if not f.is_file()]}"})
    if "bench" in stages:
        empty = args.work / "no_tuned_configs"  # SGLang's SGLANG_MOE_CONFIG_DIR layout, with no file in it
        triton_version = subprocess.run([sys.executable, "-c", "import triton; print(triton.__version__)"],
                                        capture_output=True, text=True).stdout.strip()
        (empty / "configs" / f"triton_{triton_version.replace('.', '_')}").mkdir(parents=True, exist_ok=True)
        hide = {"SGLANG_MOE_CONFIG_DIR": str(empty)}
        plugin, base = [], []
        for r in range(args.bench_rounds):
            plugin.append(bench_stage(run, f"bench_plugin_{r}", model, env_for(cap, True, hide), args, args.work))
            base.append(bench_stage(run, f"bench_sglang_{r}", model, env_for(cap, False, hide), args, args.work))
            run.stage("bench", {"plugin": plugin, "sglang_alone": base, "ratio_plugin_over_sglang": ratios(plugin, base),
                                "note": "runs interleaved (plugin, SGLang, ...) on one GPU; second pass of each batch "
                                        "size; decode under CUDA graphs"})
    if "deterministic" in stages:
        run.stage("deterministic", server_stage(run, "deterministic", model, env_for(cap, plugin=True), args, args.work,
                                                extra=("--enable-deterministic-inference",), invariance=True))
    run.data["total_seconds"] = round(time.time() - t_all, 1)
    run.save()
    print(f"[e2e] done in {run.data['total_seconds']} s -> {args.out}/e2e_results.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
