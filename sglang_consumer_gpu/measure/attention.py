"""SGLang's Triton attention on a live GPU, with a given tile: extend and context (prefill) attention.

- Extend attention (``sglang.kernels.ops.attention.extend_attention.extend_attention_fwd``,
  SGLang >= 0.5.16): new tokens attend to a paged prefix plus themselves. The tile
  (BLOCK_M, BLOCK_N, num_warps) is installed at SGLang's own seam for the duration of a call,
  ``_get_block_sizes_for_extend_attention`` -- the helper the plugin's
  ``attention-extend-blocks`` patch replaces -- keeping SGLang's BLOCK_DMODEL/DPE/DV.
- Context attention (``prefill_attention.context_attention_fwd``, the vision encoders): its
  tile is a local constant, so the launch is rewritten as the plugin's
  ``attention-prefill-blocks`` patch rewrites it (:class:`~sglang_consumer_gpu.patching.
  launch_filter.LaunchFilter`): BLOCK_M = BLOCK_N = the tile, its warps, and the grid's
  last axis recomputed as ``cdiv(max_len, BLOCK_M)``.

``tile=None`` runs whatever SGLang (and the plugin, if active) chooses. Inputs are random
(normal), outputs poisoned with NaN before a check, and the reference is float32 attention per
sequence with SGLang's masking semantics (causal over prefix + extend, sliding window, logit
cap, custom mask). :func:`error_bound` says why the bound is what it is.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.measure.common import TF32_ROUNDOFF, UNIT_ROUNDOFF, Check, judge
from sglang_consumer_gpu.measure.timer import device_l2, rotation_slots
from sglang_consumer_gpu.patches import attention_extend, attention_prefill

EXTEND = attention_extend.MODULE
PREFILL = attention_prefill.MODULE
VARIANTS = ("causal", "sliding_window", "logit_cap", "custom_mask")
SLIDING_WINDOW = 64
LOGIT_CAP = 20.0

#: Extend workloads of the benchmark rounds (docs/attention.md): (sequences, new tokens each,
#: prefix tokens each). Prefill-heavy: long new chunks; decode-heavy: speculative
#: verification / mixed chunks, few new tokens after a long prefix.
WORKLOADS: dict[str, tuple[int, int, int]] = {
    "prefill-heavy": (4, 2048, 512),
    "decode-heavy": (64, 8, 2048),
}
#: Uneven lengths for correctness: a long prefix, none, a tile-misaligned one.
CHECK_EXTEND = ((77, 150, 33), (200, 0, 95))

Tile = tuple[int, int, int]  # (BLOCK_M, BLOCK_N, num_warps)
_lock = threading.RLock()


def _operand_roundoff(dtype: str) -> float:
    """Precision of the kernel's dot operands: the input type, TF32 for float32 inputs."""
    return TF32_ROUNDOFF if dtype == "float32" else UNIT_ROUNDOFF[dtype]


def error_bound(dtype: str) -> float:
    """Bound on the max row (token, head) relative L2 error against float32 attention.

    Softmax and both accumulations run in float32. What is rounded: the probabilities, cast
    to the operand type before the P.V dot (at most u relative per weight, so at most u on a
    row), and the output, once (at most u); for 16-bit inputs q.k products are exact in
    float32. 4u bounds that with room: bf16 1.6e-2, fp16 2.0e-3. For float32 inputs both dots
    run in TF32 (u = 2^-11), which rounds all four operands (q, k, p, v: u each) and perturbs
    the scores by about u times their size, moving the weights by as much again for scores up
    to ~4 (normal inputs, scale 1/sqrt(d)): 8u = 3.9e-3. (4u, used first, was too tight: the
    H200 measured 2.9e-3 at d=128 and 2.6e-3 at d=256.)"""
    return (8 if dtype == "float32" else 4) * _operand_roundoff(dtype)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _module(name: str) -> Any:
    return importlib.import_module(name)


# ------------------------------------------------------------------------------ extend


@dataclass(frozen=True)
class ExtendCase:
    """One extend-attention batch: head dims, heads, per-sequence new and prefix lengths."""

    lq: int
    lv: int
    q_heads: int
    kv_heads: int
    extend_lens: tuple[int, ...]
    prefix_lens: tuple[int, ...]
    variant: str = "causal"
    dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if len(self.extend_lens) != len(self.prefix_lens) or not self.extend_lens:
            raise ValueError("extend_lens and prefix_lens must be equally long, at least one sequence")
        if self.q_heads % self.kv_heads:
            raise ValueError("q_heads must be a multiple of kv_heads")

    @classmethod
    def heads_for(cls, lq: int) -> tuple[int, int]:
        """Heads of the benchmark rounds: GQA 32/8, MLA (Lq 576) 16/1."""
        return (16, 1) if lq == 576 else (32, 8)

    @classmethod
    def workload(cls, name: str, lq: int, lv: int, dtype: str = "bfloat16") -> ExtendCase:
        b, n, p = WORKLOADS[name]
        hq, hk = cls.heads_for(lq)
        return cls(lq, lv, hq, hk, (n,) * b, (p,) * b, "causal", dtype)

    @classmethod
    def for_check(cls, lq: int, lv: int, variant: str = "causal", dtype: str = "bfloat16") -> ExtendCase:
        hq, hk = (16, 1) if lq == 576 else (8, 2)
        return cls(lq, lv, hq, hk, *CHECK_EXTEND, variant=variant, dtype=dtype)

    @property
    def label(self) -> str:
        return f"extend Lq={self.lq} Lv={self.lv} {self.q_heads}/{self.kv_heads} heads {self.variant} {self.dtype}"

    def bytes_per_call(self) -> int:
        elem = 2 if self.dtype != "float32" else 4
        tokens, prefix = sum(self.extend_lens), sum(self.prefix_lens)
        q_o = tokens * self.q_heads * (self.lq + self.lv)
        kv = (tokens + prefix) * self.kv_heads * (self.lq + self.lv)
        return elem * (q_o + kv)


@dataclass
class _ExtendInputs:
    q: Any
    k: Any
    v: Any
    o: Any
    k_buf: Any
    v_buf: Any
    qo_indptr: Any
    kv_indptr: Any
    kv_indices: Any
    custom_mask: Any
    mask_indptr: Any
    masks: list[Any]


@contextlib.contextmanager
def extend_tile(ea: Any, tile: Tile | None) -> Iterator[None]:
    """SGLang's extend-attention block-size helper answers ``tile`` inside the block."""
    if tile is None:
        yield
        return
    with _lock:
        original = ea._get_block_sizes_for_extend_attention
        ea._get_block_sizes_for_extend_attention = lambda lq, lv: tuple(original(lq, lv)[:3]) + tuple(tile)
        try:
            yield
        finally:
            ea._get_block_sizes_for_extend_attention = original


def sglang_extend_tile(lq: int, lv: int, capability: tuple[int, int]) -> Tile:
    """The tile SGLang's own helper picks for a GPU of ``capability`` (its capability branch)."""
    ea = _module(EXTEND)
    with _capability(ea, capability):
        blocks = ea._get_block_sizes_for_extend_attention(lq, lv)
    return tuple(blocks[3:6])  # type: ignore[return-value]


_MISSING = object()


@contextlib.contextmanager
def _capability(module: Any, capability: tuple[int, int]) -> Iterator[None]:
    """A SGLang kernel module's import-time device constants answer a CUDA GPU of ``capability``."""
    values = {"_is_cuda": True, "_is_hip": False, "CUDA_CAPABILITY": capability}
    with _lock:
        saved = {k: module.__dict__.get(k, _MISSING) for k in values}
        module.__dict__.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is _MISSING:
                    module.__dict__.pop(k, None)
                else:
                    module.__dict__[k] = v


class ExtendRun:
    """An :class:`ExtendCase` built on ``device`` (``slots`` input sets, default: past L2)."""

    def __init__(self, case: ExtendCase, *, device: str = "cuda", seed: int = 0, slots: int | None = None,
                 l2: int | None = None) -> None:  # fmt: skip
        import torch

        self.case, self.device, self.torch = case, device, torch
        self.ea = _module(EXTEND)
        self._gen = torch.Generator(device=device).manual_seed(seed)
        if slots is None:
            slots = rotation_slots(case.bytes_per_call(), device_l2(device, l2), limit=4)
        self.slots = [self._inputs() for _ in range(slots)]
        self.scale = 1.0 / math.sqrt(case.lq)

    def _randn(self, *shape: int) -> Any:
        t = self.torch
        return t.randn(*shape, device=self.device, generator=self._gen).to(getattr(t, self.case.dtype))

    def _inputs(self) -> _ExtendInputs:
        t, c, dev = self.torch, self.case, self.device
        tokens, prefix = sum(c.extend_lens), sum(c.prefix_lens)
        q = self._randn(tokens, c.q_heads, c.lq)
        k = self._randn(tokens, c.kv_heads, c.lq)
        v = self._randn(tokens, c.kv_heads, c.lv)
        pool = prefix + 16
        k_buf = self._randn(pool, c.kv_heads, c.lq)
        v_buf = self._randn(pool, c.kv_heads, c.lv)
        kv_indices = t.randperm(pool, device=dev, generator=self._gen)[:prefix].to(t.int64)
        qo = t.tensor([0, *_cumsum(c.extend_lens)], device=dev, dtype=t.int32)
        kv = t.tensor([0, *_cumsum(c.prefix_lens)], device=dev, dtype=t.int32)
        masks: list[Any] = []
        custom = mask_indptr = None
        if c.variant == "custom_mask":
            for n, p in zip(c.extend_lens, c.prefix_lens, strict=True):
                m = t.rand(n, p + n, device=dev, generator=self._gen) > 0.5
                m[:, :p] = True  # SGLang skips the custom mask over the prefix by default
                m[t.arange(n, device=dev), p + t.arange(n, device=dev)] = True  # every row sees itself
                masks.append(m.to(t.uint8))
            custom = t.cat([m.flatten() for m in masks])
            mask_indptr = t.tensor([0, *_cumsum([m.numel() for m in masks])], device=dev, dtype=t.int64)
        o = t.full((tokens, c.q_heads, c.lv), float("nan"), device=dev, dtype=q.dtype)
        return _ExtendInputs(q, k, v, o, k_buf, v_buf, qo, kv, kv_indices, custom, mask_indptr, masks)

    def run(self, tile: Tile | None = None) -> Callable[[int], None]:
        """``fn(i)``: SGLang's ``extend_attention_fwd`` on input set ``i`` with ``tile``."""
        c = self.case

        def fn(i: int) -> None:
            x = self.slots[i % len(self.slots)]
            with extend_tile(self.ea, tile):
                self.ea.extend_attention_fwd(
                    x.q, x.k, x.v, x.o, x.k_buf, x.v_buf, x.qo_indptr, x.kv_indptr, x.kv_indices,
                    x.custom_mask, c.variant != "custom_mask", x.mask_indptr, max(c.extend_lens), 1.0, 1.0,
                    sm_scale=self.scale, logit_cap=LOGIT_CAP if c.variant == "logit_cap" else 0.0,
                    sliding_window_size=SLIDING_WINDOW if c.variant == "sliding_window" else -1,
                )  # fmt: skip

        return fn

    def reference(self, slot: int = 0) -> Any:
        """float32 attention per sequence: keys = prefix + extend, SGLang's masking semantics."""
        t, c = self.torch, self.case
        x = self.slots[slot]
        group = c.q_heads // c.kv_heads
        outs, start, pstart = [], 0, 0
        for b, (n, p) in enumerate(zip(c.extend_lens, c.prefix_lens, strict=True)):
            idx = x.kv_indices[pstart : pstart + p]
            kb = t.cat([x.k_buf[idx], x.k[start : start + n]]).float().repeat_interleave(group, dim=1)
            vb = t.cat([x.v_buf[idx], x.v[start : start + n]]).float().repeat_interleave(group, dim=1)
            s = t.einsum("qhd,khd->hqk", x.q[start : start + n].float(), kb) * self.scale
            if c.variant == "logit_cap":
                s = LOGIT_CAP * t.tanh(s / LOGIT_CAP)
            qpos = t.arange(n, device=self.device)[:, None] + p
            kpos = t.arange(p + n, device=self.device)[None, :]
            if c.variant == "custom_mask":
                keep = x.masks[b].bool()
            else:
                keep = kpos <= qpos
                if c.variant == "sliding_window":
                    keep &= qpos <= kpos + SLIDING_WINDOW
            s = s.masked_fill(~keep[None], float("-inf"))
            outs.append(t.einsum("hqk,khd->qhd", t.softmax(s, dim=-1), vb))
            start, pstart = start + n, pstart + p
        return t.cat(outs)

    def check(self, tile: Tile | None = None, slot: int = 0) -> Check:
        x = self.slots[slot]
        x.o.fill_(float("nan"))
        self.run(tile)(slot)
        _sync(self.device)
        return judge(
            x.o, self.reference(slot), error_bound(self.case.dtype), tile=list(tile) if tile else None
        )


def _cumsum(xs: Any) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += int(x)
        out.append(total)
    return out


# ------------------------------------------------------------------------------ context (prefill)


@dataclass(frozen=True)
class PrefillCase:
    """One context-attention batch (``context_attention_fwd``): sequences of ``seq_lens`` tokens."""

    head_dim: int
    heads: int
    seq_lens: tuple[int, ...]
    causal: bool = False
    dtype: str = "bfloat16"

    @classmethod
    def vision(cls, head_dim: int, dtype: str = "bfloat16") -> PrefillCase:
        """The benchmark rounds' vision prefill: 8 images x 1024 tokens, 16 heads, non-causal."""
        return cls(head_dim, 16, (1024,) * 8, False, dtype)

    @classmethod
    def for_check(cls, head_dim: int, causal: bool = False, dtype: str = "bfloat16") -> PrefillCase:
        return cls(head_dim, 4, (300, 129, 64), causal, dtype)

    @property
    def label(self) -> str:
        return f"prefill d={self.head_dim} {self.heads} heads {'causal' if self.causal else 'non-causal'} {self.dtype}"


PrefillTile = tuple[int, int]  # (BLOCK, num_warps): BLOCK_M = BLOCK_N = BLOCK


class _Recorder:
    """Stands in for a Triton kernel: records the launch instead of making it."""

    def __init__(self) -> None:
        self.launches: list[dict[str, Any]] = []

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        return lambda *args, **kwargs: self.launches.append(kwargs)


def sglang_prefill_tile(head_dim: int, capability: tuple[int, int]) -> PrefillTile:
    """The tile SGLang's own ``context_attention_fwd`` launches with on a GPU of
    ``capability`` (read from the launch it makes, with ``meta`` tensors: nothing runs)."""
    import torch

    from sglang_consumer_gpu.patching.launch_filter import swap_kernel

    pa = _module(PREFILL)
    q = torch.empty(64, 1, head_dim, device="meta", dtype=torch.bfloat16)
    idx = torch.zeros(1, device="meta", dtype=torch.int32)
    rec = _Recorder()
    with _capability(pa, capability), swap_kernel(pa, "_fwd_kernel", rec):
        pa.context_attention_fwd(q, q, q, q, idx, idx, 64)
    kw = rec.launches[-1]
    return int(kw["BLOCK_M"]), int(kw["num_warps"])


@contextlib.contextmanager
def prefill_tile(pa: Any, tile: PrefillTile | None, max_len: int) -> Iterator[None]:
    """``context_attention_fwd``'s launch uses ``tile`` inside the block."""
    if tile is None:
        yield
        return
    from sglang_consumer_gpu.patching.launch_filter import LaunchFilter, swap_kernel

    block, warps = tile

    def filt(grid: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        return (grid[0], grid[1], -(-max_len // block)), dict(
            kw, BLOCK_M=block, BLOCK_N=block, num_warps=warps
        )

    with _lock, swap_kernel(pa, "_fwd_kernel", LaunchFilter(pa._fwd_kernel, filt)):
        yield


class PrefillRun:
    """A :class:`PrefillCase` built on ``device``."""

    def __init__(self, case: PrefillCase, *, device: str = "cuda", seed: int = 0, slots: int | None = None,
                 l2: int | None = None) -> None:  # fmt: skip
        import torch

        self.case, self.device, self.torch = case, device, torch
        self.pa = _module(PREFILL)
        self._gen = torch.Generator(device=device).manual_seed(seed)
        total = sum(case.seq_lens)
        if slots is None:
            elem = 4 if case.dtype == "float32" else 2
            slots = rotation_slots(
                4 * total * case.heads * case.head_dim * elem, device_l2(device, l2), limit=4
            )
        dt = getattr(torch, case.dtype)
        self.slots = [
            tuple(
                torch.randn(total, case.heads, case.head_dim, device=device, generator=self._gen).to(dt)
                for _ in range(3)
            )
            for _ in range(slots)
        ]
        self.out = [torch.full_like(q, float("nan")) for q, _, _ in self.slots]
        starts = _cumsum(case.seq_lens)[:-1]
        self.starts = torch.tensor([0, *starts], device=device, dtype=torch.int32)
        self.lens = torch.tensor(case.seq_lens, device=device, dtype=torch.int32)

    def run(self, tile: PrefillTile | None = None) -> Callable[[int], None]:
        """``fn(i)``: SGLang's ``context_attention_fwd`` on input set ``i`` with ``tile``."""
        max_len = max(self.case.seq_lens)

        def fn(i: int) -> None:
            q, k, v = self.slots[i % len(self.slots)]
            with prefill_tile(self.pa, tile, max_len):
                self.pa.context_attention_fwd(q, k, v, self.out[i % len(self.slots)], self.starts, self.lens,
                                              max_len, is_causal=self.case.causal)  # fmt: skip

        return fn

    def reference(self, slot: int = 0) -> Any:
        t, c = self.torch, self.case
        q, k, v = self.slots[slot]
        outs = []
        for s, n in zip(self.starts.tolist(), c.seq_lens, strict=True):
            qb, kb, vb = (x[s : s + n].float() for x in (q, k, v))
            att = t.einsum("qhd,khd->hqk", qb, kb) / math.sqrt(c.head_dim)
            if c.causal:
                att = att.masked_fill(t.ones(n, n, device=self.device).triu(1).bool()[None], float("-inf"))
            outs.append(t.einsum("hqk,khd->qhd", t.softmax(att, -1), vb))
        return t.cat(outs)

    def check(self, tile: PrefillTile | None = None, slot: int = 0) -> Check:
        self.out[slot].fill_(float("nan"))
        self.run(tile)(slot)
        _sync(self.device)
        return judge(self.out[slot], self.reference(slot), error_bound(self.case.dtype),
                     tile=list(tile) if tile else None)  # fmt: skip


# ------------------------------------------------------------------------------ who chooses which tile

#: SGLang's CUDA capability branches that hand ~99 KB GPUs their tiles (sm_86, sm_89, sm_120).
SGLANG_BRANCHES: tuple[tuple[int, int], ...] = ((8, 6), (8, 9), (12, 0))


def extend_choices(
    lq: int, lv: int, specs: list[Any], branches: Any = SGLANG_BRANCHES
) -> dict[Tile, list[str]]:
    """Every extend tile the plugin chooses for ``specs`` and SGLang's ``branches`` choose, with who chose it."""
    from sglang_consumer_gpu.attention import extend_tile

    out: dict[Tile, list[str]] = {}
    for spec in specs:
        t = extend_tile(spec, lq, lv)
        out.setdefault((t.block_m, t.block_n, t.num_warps), []).append(f"plugin {spec.name}")
    for cap in branches:
        out.setdefault(sglang_extend_tile(lq, lv, cap), []).append(f"sglang sm_{cap[0]}{cap[1]}")
    return out


def prefill_choices(
    head_dim: int, specs: list[Any], branches: Any = SGLANG_BRANCHES, elem_bytes: int = 2
) -> dict[PrefillTile, list[str]]:
    """Every context-attention tile the plugin chooses for ``specs`` and SGLang's ``branches`` choose."""
    from sglang_consumer_gpu.attention import prefill_tile

    out: dict[PrefillTile, list[str]] = {}
    for spec in specs:
        t = prefill_tile(spec, head_dim, elem_bytes)
        out.setdefault((t.block_m, t.num_warps), []).append(f"plugin {spec.name}")
    for cap in branches:
        out.setdefault(sglang_prefill_tile(head_dim, cap), []).append(f"sglang sm_{cap[0]}{cap[1]}")
    return out


# ------------------------------------------------------------------------------ compile jobs


@dataclass(frozen=True)
class AttentionJob:
    """Compile one attention case with one tile (a :class:`~sglang_consumer_gpu.measure.compile.Job`)."""

    case: ExtendCase | PrefillCase
    tile: tuple[int, ...] | None

    @property
    def key(self) -> str:
        return f"{self.case.label}|{self.tile}"

    @property
    def group(self) -> str:
        return self.key

    @property
    def cost(self) -> float:
        return float(math.prod(self.tile[:2])) if self.tile else 4096.0

    def warm(self) -> None:
        run = (
            ExtendRun(self.case, slots=1)
            if isinstance(self.case, ExtendCase)
            else PrefillRun(self.case, slots=1)
        )
        run.run(self.tile)(0)  # type: ignore[arg-type]
        _sync("cuda")
