"""The smallest change that fixes a launch, each one re-checked by the same planner.

Candidates come from the reasons of the verdict: expert parallelism or fewer
TP ranks with more pipeline stages when block-quantized experts stop dividing,
a per-channel checkpoint when dense layers stop dividing, a 16-bit or 4-bit
checkpoint where the GPU cannot run fp8 experts, fp8 e5m2 KV before sm_89,
SGLang's own default static fraction when a higher one leaves too little
headroom, a higher fraction when the weights leave no KV pool, more pipeline
stages when the weights do not fit, more nodes when a node has too few GPUs,
the neighbouring power-of-two TP sizes when heads or the MoE width do not split
over TP, an expert-parallel size (TP's, or a power of two) that divides
both TP and the experts, and the flag a finding names as its fix (a family's:
a backend with kernels for the GPU).
A candidate is kept only if the planner, run again on it (SGLang's resolution
included), judges it better than the original; the result is shown with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sglang_consumer_gpu.models import (
    ModelDescription,
    Quantization,
    parse_quantization,
    quantization_from_flag,
)
from sglang_consumer_gpu.models.launch import apply_fix, set_flag
from sglang_consumer_gpu.planner.constraints import FAIL, RISK
from sglang_consumer_gpu.planner.sglang_edge import InvalidValue, SglangRejects
from sglang_consumer_gpu.planner.verdict import OK, Assessment

RANK = {OK: 0, RISK: 1, FAIL: 2}

#: (argv, model description, another checkpoint?) -> Assessment: the same planner, on a changed
#: launch; with ``True`` SGLang is asked about this model's config without its quantization_config.
Evaluate = Callable[[Sequence[str], ModelDescription, bool], Assessment]


@dataclass(frozen=True)
class Candidate:
    change: str  # what to do, in words
    argv: tuple[str, ...]
    desc: ModelDescription
    needs_other_checkpoint: bool = False
    family: str = ""  # candidates of one family are alternatives: the first that works is enough


@dataclass(frozen=True)
class Suggestion:
    change: str
    argv: tuple[str, ...]
    result: Assessment
    needs_other_checkpoint: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "change": self.change,
            "argv": list(self.argv),
            "verdict": self.result.verdict,
            "reasons": [f.text for f in self.result.reasons],
        }


def _tp_neighbours(tp: int) -> list[int]:
    """The TP sizes next to ``tp`` that launches use, powers of two: the nearest above, then below."""
    above = 1 << tp.bit_length() if tp & (tp - 1) else tp * 2
    below = 1 << (tp.bit_length() - 1) if tp & (tp - 1) else tp // 2
    return [t for t in (above, below) if t >= 1]


def _candidates(base: Assessment) -> list[Candidate]:
    launch, desc, spec = base.launch, base.desc, base.spec
    argv = launch.argv
    texts = [(f.area, f.text) for f in base.reasons]
    out: list[Candidate] = []
    experts_block = any(a == "quantization" and t.startswith("experts:") for a, t in texts)
    dense_block = any(a == "quantization" and not t.startswith("experts:") for a, t in texts)
    if experts_block:
        out.append(
            Candidate(
                f"expert parallelism: --ep {launch.tp} (each GPU holds whole experts, so their width stays "
                f"{desc.moe.intermediate if desc.moe else '?'})",
                set_flag(argv, "--ep-size", str(launch.tp), "--ep"),
                desc,
            )
        )
    if experts_block or dense_block:
        tp = launch.tp // 2
        while tp >= 1 and launch.tp % tp == 0:
            pp = launch.pp * launch.tp // tp
            out.append(
                Candidate(
                    f"fewer TP ranks, more pipeline stages: --tp {tp} --pp-size {pp} (same {launch.world} GPUs)",
                    set_flag(set_flag(argv, "--tp-size", str(tp), "--tp"), "--pp-size", str(pp)),
                    desc,
                    family="tp-pp",
                )
            )
            tp //= 2
    if any(a == "layout" and " TP " in t for a, t in texts):  # heads or MoE width do not split over TP
        for tp in _tp_neighbours(launch.tp):
            flags = set_flag(argv, "--tp-size", str(tp), "--tp")
            if launch.ep == launch.tp:
                flags = set_flag(flags, "--ep-size", str(tp), "--ep")
            out.append(Candidate(f"--tp {tp} ({launch.world // launch.tp * tp} GPUs)", flags, desc))
    if desc.moe and any(a == "layout" and "--ep" in t for a, t in texts):
        sizes = dict.fromkeys([launch.tp, *(1 << k for k in range(launch.tp.bit_length() - 1, -1, -1))])
        for ep in (e for e in sizes if launch.tp % e == 0 and desc.moe.experts % e == 0 and e != launch.ep):
            out.append(
                Candidate(f"--ep {ep}", set_flag(argv, "--ep-size", str(ep), "--ep"), desc, family="ep")
            )
    if dense_block:
        out.append(
            Candidate(
                "a per-channel INT8 checkpoint of this model (for DeepSeek-R1: meituan/DeepSeek-R1-Channel-INT8), "
                "launched with --quantization w8a8_int8",
                set_flag(argv, "--quantization", "w8a8_int8"),
                desc.with_quantization(quantization_from_flag("w8a8_int8")),
                needs_other_checkpoint=True,
            )
        )
    if any(a == "architecture" and "fp8_w8a8 fused MoE" in t for a, t in texts):
        plain = set_flag(argv, "--quantization", None)
        out.append(
            Candidate(
                "the 16-bit checkpoint of this model",
                plain,
                desc.with_quantization(Quantization()),
                True,
                "ckpt",
            )
        )
        awq = parse_quantization({"quant_method": "awq", "bits": 4, "group_size": 128}, source="suggestion")
        out.append(
            Candidate(
                "a 4-bit AWQ checkpoint of this model", plain, desc.with_quantization(awq), True, "ckpt4"
            )
        )
    if any("--kv-cache-dtype" in t and "fp8_e5m2" in t for _, t in texts):
        out.append(
            Candidate("--kv-cache-dtype fp8_e5m2", set_flag(argv, "--kv-cache-dtype", "fp8_e5m2"), desc)
        )
    mem = base.memory
    if mem is not None and any(a == "memory" for a, _ in texts):
        if any("outside the static pool, less than SGLang's own estimate" in t for _, t in texts):
            out.append(
                Candidate(
                    f"SGLang's default static fraction for this GPU ({mem.default_fraction}): drop --mem-fraction-static",
                    set_flag(argv, "--mem-fraction-static", None),
                    desc,
                )
            )
        if mem.kv_pool_bytes <= 0 and mem.worst.weights < mem.pre_load_bytes:
            need = (mem.worst.weights + 0.02 * mem.pre_load_bytes) / mem.pre_load_bytes
            frac = min(0.95, -(-need * 100 // 1) / 100)
            out.append(
                Candidate(
                    f"--mem-fraction-static {frac}", set_flag(argv, "--mem-fraction-static", str(frac)), desc
                )
            )
        if mem.kv_pool_bytes <= 0 or mem.worst.weights > mem.gpu_bytes:
            out.append(
                Candidate(
                    f"twice the tensor-parallel GPUs: --tp {launch.tp * 2} ({launch.world * 2} GPUs)",
                    set_flag(argv, "--tp-size", str(launch.tp * 2), "--tp"),
                    desc,
                )
            )
            pp = launch.pp * 2
            out.append(
                Candidate(
                    f"twice the pipeline stages: --pp-size {pp} ({launch.world * 2} GPUs)",
                    set_flag(argv, "--pp-size", str(pp)),
                    desc,
                )
            )
        if mem.kv_pool_bytes > 0 and mem.kv_tokens < launch.context_len and launch.kv_bytes > 1:
            kv = "fp8_e4m3" if spec.supports_fp8_e4m3 else "fp8_e5m2"
            out.append(
                Candidate(
                    f"an fp8 KV cache: --kv-cache-dtype {kv}", set_flag(argv, "--kv-cache-dtype", kv), desc
                )
            )
    for fix in dict.fromkeys(f.fix for f in base.findings if f.fix):
        out.append(Candidate(" ".join(fix).strip(), apply_fix(argv, fix), desc))
    for _, t in texts:
        if "run it on" in t and "--nnodes" in t:
            nodes = t.split("--nnodes ")[-1].split(",")[0].split(")")[0].strip()
            if nodes.isdigit():
                out.append(Candidate(f"--nnodes {nodes}", set_flag(argv, "--nnodes", nodes), desc))
    return out


def suggest(base: Assessment, evaluate: Evaluate, *, limit: int = 3) -> list[Suggestion]:
    """Changes that make ``base`` better, best first (each one re-planned with ``evaluate``)."""
    if base.verdict == OK:
        return []
    found: list[Suggestion] = []
    done: set[str] = set()
    for cand in _candidates(base):
        if cand.family and cand.family in done:
            continue
        try:
            result = evaluate(cand.argv, cand.desc, cand.needs_other_checkpoint)
        except (SglangRejects, InvalidValue):
            continue
        if RANK[result.verdict] < RANK[base.verdict]:
            change = cand.change + (
                " (a different checkpoint: download it first)" if cand.needs_other_checkpoint else ""
            )
            found.append(Suggestion(change, cand.argv, result, cand.needs_other_checkpoint))
            done.add(cand.family)
        if len(found) >= limit:
            break
    return sorted(found, key=lambda s: RANK[s.result.verdict])
