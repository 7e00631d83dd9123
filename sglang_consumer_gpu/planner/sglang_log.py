"""SGLang's own memory log lines, and how the planner's numbers compare with them.

A ``launch_server`` log (``--log-level info``, the default) says, for TP rank 0:

    Load weight begin. avail mem=X GB
    Load weight end. ... avail mem=X GB, mem usage=W GB.
    KV Cache is allocated. dtype: ..., #tokens: T, K size: k GB, V size: v GB   (MLA: KV size: kv GB)
    Memory pool end. avail mem=X GB
    Capture ... cuda graph end. ... mem usage=G GB ...
    max_total_num_tokens=T, chunked_prefill_size=C, max_prefill_tokens=P, max_running_requests=R, context_len=L

SGLang's "GB" is GiB (it divides by ``1 << 30``). Pure parsing and arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_PATTERNS = {
    "load_begin_avail_gib": re.compile(rf"Load weight begin\. avail mem={_NUM} GB"),
    "load_end": re.compile(rf"Load weight end\..*?avail mem={_NUM} GB, mem usage={_NUM} GB"),
    "kv_alloc": re.compile(
        rf"is allocated\. dtype: ([\w.]+), #tokens: (\d+), (?:K size: {_NUM} GB, V size: {_NUM} GB|KV size: {_NUM} GB)"
    ),
    "pool_end_avail_gib": re.compile(rf"Memory pool end\. avail mem={_NUM} GB"),
    "graph_end": re.compile(rf"[Cc]apture .*?[Cc]uda graph end\..*?mem usage={_NUM} GB", re.IGNORECASE),
    "summary": re.compile(
        r"max_total_num_tokens=(\d+), chunked_prefill_size=(-?\d+), max_prefill_tokens=(\d+), "
        r"max_running_requests=(\d+), context_len=(\d+)"
    ),
    "fraction": re.compile(rf"mem_fraction_static={_NUM}"),
}


@dataclass
class LogMemory:
    """What one rank's startup log says about memory (None where the line is missing)."""

    load_begin_avail_gib: float | None = None
    weights_gib: float | None = None  # "Load weight end ... mem usage"
    after_load_avail_gib: float | None = None
    kv_dtype: str | None = None
    kv_tokens_allocated: int | None = None
    kv_gib: float | None = None
    pool_end_avail_gib: float | None = None
    cuda_graph_gib: float | None = None
    max_total_num_tokens: int | None = None
    chunked_prefill_size: int | None = None
    max_running_requests: int | None = None
    context_len: int | None = None
    mem_fraction_static: float | None = None

    @property
    def pool_tokens(self) -> int | None:
        """The KV pool in tokens: the scheduler's summary line, else the allocation line
        (the same number; a server stopped during CUDA-graph capture logs only the latter)."""
        return self.max_total_num_tokens if self.max_total_num_tokens is not None else self.kv_tokens_allocated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_log(text: str, rank: str = "TP0") -> LogMemory:
    """The first occurrence of each line; lines tagged with another rank (``[TP3]``) are skipped."""
    out = LogMemory()
    graph = 0.0
    seen_graph = False
    for line in text.splitlines():
        tag = re.search(r"\[(TP\d+|DP\d+ TP\d+|PP\d+ TP\d+)[^\]]*\]", line)
        if tag and rank not in tag.group(1):
            continue
        if out.load_begin_avail_gib is None and (m := _PATTERNS["load_begin_avail_gib"].search(line)):
            out.load_begin_avail_gib = float(m.group(1))
        if out.weights_gib is None and (m := _PATTERNS["load_end"].search(line)):
            out.after_load_avail_gib, out.weights_gib = float(m.group(1)), float(m.group(2))
        if out.kv_tokens_allocated is None and (m := _PATTERNS["kv_alloc"].search(line)):
            out.kv_dtype, out.kv_tokens_allocated = m.group(1), int(m.group(2))
            out.kv_gib = float(m.group(5)) if m.group(5) else float(m.group(3)) + float(m.group(4))
        if out.pool_end_avail_gib is None and (m := _PATTERNS["pool_end_avail_gib"].search(line)):
            out.pool_end_avail_gib = float(m.group(1))
        if m := _PATTERNS["graph_end"].search(line):
            graph += float(m.group(1))
            seen_graph = True
        if out.max_total_num_tokens is None and (m := _PATTERNS["summary"].search(line)):
            out.max_total_num_tokens = int(m.group(1))
            out.chunked_prefill_size = int(m.group(2))
            out.max_running_requests = int(m.group(4))
            out.context_len = int(m.group(5))
        if out.mem_fraction_static is None and (m := _PATTERNS["fraction"].search(line)):
            out.mem_fraction_static = float(m.group(1))
    out.cuda_graph_gib = graph if seen_graph else None
    return out


def _ratio(planner: float | None, sglang: float | None) -> float | None:
    if planner is None or not sglang:
        return None
    return round(planner / sglang, 4)


def compare(
    log: LogMemory,
    *,
    weights_gib: float,
    kv_bytes_per_token: float,
    planner_tokens: int,
    pre_load_gib: float,
    fraction: float,
    page_size: int = 1,
) -> dict[str, Any]:
    """Planner vs SGLang, line by line. ``tokens_with_log_pre_load`` re-runs the pool formula
    with SGLang's measured pre-load memory, which isolates the planner's one assumption
    (memory in use before the weights load) from its weight and KV models."""
    rows: dict[str, Any] = {
        "weights_gib": {
            "planner": weights_gib,
            "sglang": log.weights_gib,
            "ratio": _ratio(weights_gib, log.weights_gib),
        },
        "pre_load_avail_gib": {
            "planner": pre_load_gib,
            "sglang": log.load_begin_avail_gib,
            "ratio": _ratio(pre_load_gib, log.load_begin_avail_gib),
        },
        "max_total_num_tokens": {
            "planner": planner_tokens,
            "sglang": log.pool_tokens,
            "ratio": _ratio(planner_tokens, log.pool_tokens),
        },
    }
    if log.kv_gib is not None and log.kv_tokens_allocated:
        sg_per_token = log.kv_gib * (1 << 30) / log.kv_tokens_allocated
        rows["kv_bytes_per_token"] = {
            "planner": kv_bytes_per_token,
            "sglang": round(sg_per_token, 1),
            "ratio": _ratio(kv_bytes_per_token, sg_per_token),
        }
    if log.load_begin_avail_gib is not None and kv_bytes_per_token > 0:
        pool = log.load_begin_avail_gib * fraction - weights_gib
        tokens = int(max(pool, 0) * (1 << 30) // kv_bytes_per_token) // page_size * page_size
        rows["tokens_with_log_pre_load"] = {
            "planner": tokens,
            "sglang": log.pool_tokens,
            "ratio": _ratio(tokens, log.pool_tokens),
        }
    return rows
