"""Every fused-MoE and Triton attention launch a model makes at the batch sizes
the server uses, and whether it fits the GPU: the plugin's choice and SGLang's
own, side by side.

Batch sizes come from the :class:`~.launch.Launch` SGLang resolved: the decode
CUDA-graph sizes, the prefill graph sizes and the chunked-prefill size (under
DP attention the MoE sees the tokens of every attention-DP rank, so its batch
is that many times larger). For each batch the plugin's config comes from
:func:`~sglang_consumer_gpu.moe.lookup.choose` (and its source), SGLang's own
from its ``try_get_optimal_moe_config`` under ``virtual_gpu(spec, patched=False)``.

Fit: a config whose analytic bound (:func:`~sglang_consumer_gpu.moe.smem.estimate_shared`,
never below the compiled number in its measured sample) is within the limit
fits without compiling; any other is compiled by the oracle for the GPU's
architecture (both GEMMs; on-disk cache, so a second run is fast). One compile
per distinct config: shared memory depends on the tile and dtype, not on M.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.moe.shape import STANDARD_BATCH_GRID, MoeShape
from sglang_consumer_gpu.moe.validate import pair_label, tile_label
from sglang_consumer_gpu.planner.launch import Launch

#: Dtypes whose fused-MoE kernel the analytic bound models (fused_moe_kernel, not the gptq/awq one).
BOUND_DTYPES = frozenset({None, "fp8_w8a8", "int8_w8a8"})


@dataclass(frozen=True)
class Fit:
    """Shared memory of one config on one GPU, and how it was known."""

    shared: int | None
    how: str  # "bound", "oracle", or "error: ..."
    fits: bool | None

    def label(self, limit: int) -> str:
        if self.shared is None:
            return self.how
        if self.fits is False:
            return f"{self.shared} B > {limit}: DOES NOT FIT ({self.how})"
        bound = "<= " if self.how.startswith("bound") else ""
        return f"{bound}{self.shared} B ({self.how})"


@dataclass(frozen=True)
class KernelRow:
    """One kernel over a range of batch sizes that share a config."""

    kernel: str
    batches: str
    plugin_config: str
    plugin_source: str
    plugin_fit: Fit
    sglang_config: str
    sglang_fit: Fit

    @property
    def sglang_alone_fails(self) -> bool:
        return self.sglang_fit.fits is False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "batches": self.batches,
            "plugin": {
                "config": self.plugin_config,
                "source": self.plugin_source,
                **self.plugin_fit.__dict__,
            },
            "sglang": {"config": self.sglang_config, **self.sglang_fit.__dict__},
        }


def moe_batches(launch: Launch) -> list[int]:
    """Token counts the fused MoE runs at: graph sizes, the chunked-prefill batch,
    and the lookup grid in between (eager prefill takes any size up to the chunk)."""
    scale = launch.attn_dp
    top = max([launch.chunked_prefill_size, *launch.prefill_graph_bs, *launch.decode_graph_bs, 1]) * scale
    sizes = {
        b * scale for b in (*launch.decode_graph_bs, *launch.prefill_graph_bs, launch.chunked_prefill_size)
    }
    sizes |= {m for m in STANDARD_BATCH_GRID if m <= top}
    return sorted(s for s in sizes if s > 0)


def _ranges(ms: list[int], key: Callable[[int], Any]) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    for m in ms:
        k = key(m)
        if out and out[-1][2] == k:
            out[-1] = (out[-1][0], m, k)
        else:
            out.append((m, m, k))
    return out


def _sglang_choices(
    spec: GpuSpec, shape: MoeShape, ms: list[int]
) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """SGLang's own (up, down) config per batch size, all asked on one virtual GPU (each entry
    re-applies every patch); its "Using default MoE kernel config" warnings are the expected
    answer here, not news for the user, so they are silenced."""
    from sglang_consumer_gpu.checks.moe import sglang_choice
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    log = logging.getLogger("sglang")
    level = log.level
    log.setLevel(logging.ERROR)
    out = {}
    try:
        with virtual_gpu(spec, patched=False):
            for m in ms:
                up, down = sglang_choice(shape, m)
                out[m] = (up, down or up)
    finally:
        log.setLevel(level)
    return out


def _freeze(cfg: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in cfg.items() if k != "USE_TMA"))


class FitCache:
    """Fits of distinct (config, patched) pairs, compiled at most once each."""

    def __init__(self, spec: GpuSpec, shape: MoeShape, *, compile: bool, progress: Any = None) -> None:
        self.spec, self.shape, self.compile, self.progress = spec, shape, compile, progress
        self.done: dict[Any, Fit] = {}

    def needs_compile(self, cfg: dict[str, Any]) -> bool:
        from sglang_consumer_gpu.moe.smem import estimate_shared

        if self.shape.dtype not in BOUND_DTYPES:
            return True
        bound = estimate_shared(cfg, self.shape.dtype, self.shape.block_shape, self.spec.capability)
        return bound > self.spec.smem_per_block_optin

    def fit(self, cfg: dict[str, Any], m: int, *, patched: bool) -> Fit:
        key = (_freeze(cfg), patched)
        if key not in self.done:
            self.done[key] = self._fit(cfg, m, patched)
        return self.done[key]

    def _fit(self, cfg: dict[str, Any], m: int, patched: bool) -> Fit:
        from sglang_consumer_gpu.moe.smem import estimate_shared

        limit = self.spec.smem_per_block_optin
        if not self.needs_compile(cfg):
            bound = estimate_shared(cfg, self.shape.dtype, self.shape.block_shape, self.spec.capability)
            return Fit(bound, "bound", True)
        if not self.compile:
            bound = estimate_shared(cfg, self.shape.dtype, self.shape.block_shape, self.spec.capability)
            return Fit(bound, "bound only (--no-compile)", None)
        try:
            from sglang_consumer_gpu.oracle.kernels.moe import moe_resources_both

            both = moe_resources_both(
                self.spec,
                E=self.shape.E,
                N=self.shape.N,
                K=self.shape.K,
                topk=self.shape.topk,
                M=m,
                dtype=self.shape.dtype,
                block_shape=list(self.shape.block_shape) if self.shape.block_shape else None,
                config={k: v for k, v in cfg.items() if k != "USE_TMA"},
                per_channel_quant=self.shape.per_channel_quant,
                patched=patched,
            )
            shared = max(int(r.shared) for r in both.values())
            return Fit(shared, "oracle", shared <= limit)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            return Fit(None, f"error: {type(exc).__name__}: {text[-1] if text else ''}"[:200], False)
        finally:
            if self.progress is not None:
                self.progress.update(1)


def moe_rows(
    spec: GpuSpec,
    shape: MoeShape,
    launch: Launch,
    *,
    compile: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> list[KernelRow]:
    """Fused-MoE rows: batch ranges with the plugin's and SGLang's configs and their fit."""
    from sglang_consumer_gpu.moe.lookup import choose

    ms = moe_batches(launch)
    plugin = {m: choose(m, shape, spec) for m in ms}
    sglang = _sglang_choices(spec, shape, ms)
    todo: dict[Any, None] = {}
    checker = FitCache(spec, shape, compile=compile)
    for m in ms:
        for cfg, patched in ((plugin[m].config, True), (sglang[m][0], False), (sglang[m][1], False)):
            if cfg and checker.needs_compile(cfg):
                todo[(_freeze(cfg), patched)] = None
    bar = progress(len(todo)) if (progress and compile and todo) else None
    checker.progress = bar
    rows: list[KernelRow] = []

    def key(m: int) -> Any:
        return (_freeze(plugin[m].config), plugin[m].source, _freeze(sglang[m][0]), _freeze(sglang[m][1]))

    for lo, hi, _ in _ranges(ms, key):
        c = plugin[lo]
        up, down = sglang[lo]
        batches = f"M={lo}" if lo == hi else f"M={lo}-{hi}"
        src = c.source
        pfit = checker.fit(c.config, lo, patched=True) if c.config else Fit(None, "SGLang's default", None)
        sfit_up = checker.fit(up, lo, patched=False)
        sfit = sfit_up if down == up else _worst(sfit_up, checker.fit(down, lo, patched=False))
        rows.append(
            KernelRow("fused_moe", batches, tile_label(c.config), src, pfit, pair_label(up, down), sfit)
        )
    if bar is not None:
        bar.close()
    return rows


def _worst(a: Fit, b: Fit) -> Fit:
    if a.fits is False:
        return a
    if b.fits is False:
        return b
    return a if (a.shared or 0) >= (b.shared or 0) else b


def attention_cases(desc: ModelDescription, launch: Launch) -> list[Any]:
    """The Triton attention launches SGLang's triton backend makes for this model (per GPU)."""
    from sglang_consumer_gpu.oracle.kernels.attention import AttentionCase

    a = desc.attention
    kv = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}.get(launch.kv_cache_dtype, "")
    heads = max(1, a.q_heads // launch.attn_tp)
    dtype = "float16" if launch.model_dtype == "float16" else "bfloat16"
    if a.is_mla:
        latent = (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)
        return [
            AttentionCase("extend", a.head_dim, a.v_head_dim, dtype, kv, q_heads=heads, kv_heads=heads),
            AttentionCase("extend", latent, a.kv_lora_rank or 0, dtype, kv, q_heads=heads, kv_heads=1),
            AttentionCase("decode", latent, a.kv_lora_rank or 0, dtype, kv, q_heads=heads, kv_heads=1),
        ]
    kvh = max(1, a.kv_heads // launch.attn_tp)
    variant = "sliding_window" if a.sliding_window else "causal"
    return [
        AttentionCase("extend", a.head_dim, a.v_head_dim, dtype, kv, variant, q_heads=heads, kv_heads=kvh),
        AttentionCase("decode", a.head_dim, a.v_head_dim, dtype, kv, q_heads=heads, kv_heads=kvh),
    ]


def attention_rows(
    spec: GpuSpec, desc: ModelDescription, launch: Launch, *, compile: bool = True
) -> list[KernelRow]:
    """Triton attention launches (triton backend only; other backends run no Triton attention kernel)."""
    from sglang_consumer_gpu.oracle.kernels.attention import launch_resources

    rows: list[KernelRow] = []
    limit = spec.smem_per_block_optin
    for case in attention_cases(desc, launch):
        fits: list[Fit] = []
        for patched in (True, False):
            if not compile:
                fits.append(Fit(None, "not compiled (--no-compile)", None))
                continue
            try:
                res = launch_resources(spec, case, patched=patched)
                worst = max(res, key=lambda r: r.shared)
                fits.append(Fit(int(worst.shared), "oracle", all(r.shared <= limit for r in res)))
            except Exception as exc:
                text = str(exc).strip().splitlines()
                fits.append(
                    Fit(None, f"error: {type(exc).__name__}: {text[-1] if text else ''}"[:200], False)
                )
        label = f"{case.launcher} Lq={case.lq} Lv={case.lv} {case.q_heads}/{case.kv_heads} heads"
        if case.kv_dtype:
            label += f" kv={case.kv_dtype}"
        rows.append(
            KernelRow(
                "attention", label, "plugin's tiles", "attention patches", fits[0], "SGLang's tiles", fits[1]
            )
        )
    return rows


def kernel_rows(
    spec: GpuSpec,
    desc: ModelDescription,
    launch: Launch,
    shape: MoeShape | None,
    *,
    compile: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> tuple[list[KernelRow], list[str]]:
    """All kernel rows for the launch, plus notes on what was not checked."""
    notes: list[str] = []
    rows: list[KernelRow] = []
    if shape is not None:
        rows += moe_rows(spec, shape, launch, compile=compile, progress=progress)
    if launch.attention_backend == "triton":
        rows += attention_rows(spec, desc, launch, compile=compile)
    else:
        notes.append(
            f"attention runs in SGLang's {launch.attention_backend or 'default'} backend (FlashInfer/FA3 kernels, "
            "not Triton): nothing for the shared-memory oracle to compile; with --attention-backend triton the "
            "Triton launches are checked"
        )
    return rows, notes


def sglang_alone_failures(rows: Iterable[KernelRow]) -> list[KernelRow]:
    return [r for r in rows if r.sglang_alone_fails]
