"""A server launch (``launch_server`` with a model on one kind of GPU): the parallel layout and
the settings SGLang resolves for it. Plain data, filled by :mod:`sglang_consumer_gpu.planner.
sglang_edge` from SGLang's own argument parser and resolution pipeline (so defaults are
SGLang's, not ours); the families read the batch sizes and attention layout from it, and each
finds there what it read from the resolution itself (``facts``, by family name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Launch:
    """One ``launch_server`` command on one kind of GPU."""

    argv: tuple[str, ...]  # the SGLang flags as given (without --model-path)
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1  # data-parallel replicas (each tp x pp GPUs)
    attn_dp_size: int = (
        1  # attention-DP groups inside the TP group (--attn-dp-size, or --dp with --enable-dp-attention)
    )
    nnodes: int = 1
    enable_dp_lm_head: bool = False
    moe_dense_tp: int | None = None
    kv_cache_dtype: str = "auto"  # as resolved by SGLang ("auto" = the model dtype)
    kv_bytes: int = 2
    model_dtype: str = "bfloat16"
    quantization_flag: str | None = None
    mem_fraction_static: float = 0.9
    default_mem_fraction_static: float = 0.9  # what SGLang picks when the flag is absent
    gpu_mem_mib: float = 0.0  # the GPU memory SGLang's heuristics saw (MiB)
    chunked_prefill_size: int = 4096
    decode_graph_bs: tuple[int, ...] = ()
    prefill_graph_bs: tuple[int, ...] = ()
    decode_graph: bool = True
    max_running_requests: int | None = None
    max_total_tokens: int | None = None
    context_len: int = 4096
    page_size: int = 1
    attention_backend: str = ""
    moe_runner_backend: str = "auto"
    pp_layers: tuple[tuple[int, int], ...] = ()  # SGLang's layer range of each pipeline stage
    disable_custom_all_reduce: bool = False  # as SGLang resolved it (a flag, or a model's own override)
    enable_p2p_check: bool = False  # --enable-p2p-check: SGLang tests peer access instead of assuming it
    notes: tuple[str, ...] = field(default=())
    #: What each family read from SGLang's resolution (``families.base.Family.launch_facts``), by name.
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def attn_dp(self) -> int:
        return self.attn_dp_size

    @property
    def dp_attention(self) -> bool:
        return self.attn_dp_size > 1

    @property
    def attn_tp(self) -> int:
        return self.tp // self.attn_dp

    @property
    def moe_tp(self) -> int:
        return self.tp // self.ep

    @property
    def world(self) -> int:
        """GPUs the launch uses in total (attention DP lives inside the TP group)."""
        return self.tp * self.pp * self.dp

    @property
    def per_node(self) -> int:
        return self.world // max(self.nnodes, 1)

    @property
    def kv_dtype_label(self) -> str:
        return self.model_dtype if self.kv_cache_dtype in ("auto", "") else self.kv_cache_dtype

    def layout(self) -> str:
        parts = [f"TP{self.tp}"]
        if self.pp > 1:
            parts.append(f"PP{self.pp}")
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        if self.attn_dp > 1:
            parts.append(f"DP-attention{self.attn_dp}")
        if self.dp > 1:
            parts.append(f"DP{self.dp}")
        nodes = f" on {self.nnodes} nodes" if self.nnodes > 1 else ""
        return "/".join(parts) + f" ({self.world} GPUs{nodes})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(attn_tp=self.attn_tp, attn_dp=self.attn_dp, moe_tp=self.moe_tp, world=self.world)
        return d


def apply_fix(argv: Sequence[str], fix: tuple[str, str]) -> tuple[str, ...]:
    """``argv`` with a finding's fix: ``(flag, value)``, or ``(flag, "")`` for a switch such as
    ``--disable-custom-all-reduce`` (added once)."""
    flag, value = fix
    if value:
        return set_flag(argv, flag, value)
    return tuple(argv) if flag in argv else (*argv, flag)


def set_flag(argv: Sequence[str], flag: str, value: str | None, *aliases: str) -> tuple[str, ...]:
    """``argv`` with ``flag`` (or an alias) set to ``value`` (None: removed)."""
    names = (flag, *aliases)
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        if any(a.startswith(n + "=") for n in names):
            continue
        out.append(a)
    if value is not None:
        out += [flag, value]
    return tuple(out)
