"""The W8A8-INT8 scaled GEMM on a live GPU: the plugin's Triton kernel, sgl-kernel's, and a torch baseline.

``int8_scaled_mm(a, b, scale_a, scale_b, out_dtype, bias)`` with sgl-kernel's layouts: ``a``
[M, K] int8 row-major (per-token quantized activations), ``b`` [K, N] int8 column-major (the
weight stored [N, K], passed as ``.t()``), ``scale_a`` [M, 1], ``scale_b`` [N] float32.

Routes (:data:`ROUTES`), each ``fn(i)`` on weight copy ``i`` (weights rotated past L2, as a
forward pass reads each layer once per step):

- ``triton``: the plugin's kernel (:func:`sglang_consumer_gpu.int8.ops.int8_scaled_mm`) with
  the tile the dispatch table gives ``spec``, or a forced tile;
- ``sgl-kernel``: ``sgl_kernel.int8_scaled_mm``, where it imports and has a kernel for the GPU;
- ``torch``: what a user without sgl-kernel could write, ``(torch._int_mm(a, b) * scale_a *
  scale_b).to(out_dtype)``; ``_int_mm`` needs M > 16, so smaller batches are zero-padded to 32
  rows inside the timed call;
- ``int_mm``: ``torch._int_mm`` alone (no scaling: not a usable layer, the floor any
  ``_int_mm`` path could reach).

:func:`check_case` is the correctness check with its bound (see there); :data:`MODEL_LAYERS`
are the (N, K) of W8A8-INT8 linear layers of real models, for checks and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.measure.common import Check
from sglang_consumer_gpu.measure.timer import device_l2, rotation_slots

ROUTES = ("triton", "sgl-kernel", "torch", "int_mm")

GUARD = 16  # extra poisoned rows and columns around a checked result
# float32 epilogue: acc -> fp32 (rel 2^-24), two products and a sum: < 2^-20 relative.
EPILOGUE_REL = 2.0**-20
MANTISSA_BITS = {"bfloat16": 8, "float16": 11}  # significand bits, implicit one included
MIN_NORMAL_EXP = {"bfloat16": -126, "float16": -14}


# ------------------------------------------------------------------------------ model shapes


@dataclass(frozen=True)
class Layer:
    """One linear layer on one GPU: N output features, K input features (TP split applied:
    column-parallel layers divide N, row-parallel layers divide K)."""

    model: str
    name: str
    n: int
    k: int

    @property
    def label(self) -> str:
        return f"{self.model} {self.name} N={self.n} K={self.k}"


def _llama_like(model: str, hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int,
                tp: int) -> list[Layer]:  # fmt: skip
    qkv = (heads + 2 * kv_heads) * head_dim
    return [
        Layer(model, "qkv_proj", qkv // tp, hidden),
        Layer(model, "o_proj", hidden, heads * head_dim // tp),
        Layer(model, "gate_up_proj", 2 * inter // tp, hidden),
        Layer(model, "down_proj", hidden, inter // tp),
    ]


def _deepseek_r1(tp: int) -> list[Layer]:
    """DeepSeek-R1-Channel-INT8's dense (non-expert) linears: MLA projections and the three
    dense MLP layers. Experts go through fused MoE, not this GEMM."""
    model = f"DeepSeek-R1 TP{tp}"
    hidden, heads = 7168, 128
    return [
        Layer(model, "fused_qkv_a_proj", 1536 + 576, hidden),  # replicated
        Layer(model, "q_b_proj", heads * 192 // tp, 1536),
        Layer(model, "kv_b_proj", heads * 256 // tp, 512),
        Layer(model, "o_proj", hidden, heads * 128 // tp),
        Layer(model, "dense gate_up_proj", 2 * 18432 // tp, hidden),
        Layer(model, "dense down_proj", hidden, 18432 // tp),
    ]


MODEL_LAYERS: tuple[Layer, ...] = (
    *_llama_like("Llama-3-8B TP1", 4096, 14336, 32, 8, 128, 1),
    *_llama_like("Llama-3-70B TP4", 8192, 28672, 64, 8, 128, 4),
    *_llama_like("Qwen2.5-7B TP1", 3584, 18944, 28, 4, 128, 1),
    *_deepseek_r1(8),
    *_deepseek_r1(32),
)
#: Token counts (M): decode batches to long prefills.
M_VALUES: tuple[int, ...] = (1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def unique_nk(layers: tuple[Layer, ...] = MODEL_LAYERS) -> list[tuple[int, int]]:
    """The distinct (N, K) of ``layers``, in order."""
    return list(dict.fromkeys((layer.n, layer.k) for layer in layers))


# ------------------------------------------------------------------------------ the error bound


def half_ulp(ref: Any, dtype_name: str) -> Any:
    """Half the spacing of ``dtype`` at |ref| (float64 tensor in, float64 out)."""
    import torch

    _, exp = torch.frexp(ref.abs().clamp_min(1e-300))  # |ref| = m * 2^exp, m in [0.5, 1)
    exp = torch.maximum(exp - 1, torch.tensor(MIN_NORMAL_EXP[dtype_name], device=ref.device))
    return torch.ldexp(torch.full_like(ref, 0.5), exp - (MANTISSA_BITS[dtype_name] - 1))


def rounding_ulps(dtype_name: str, device: str) -> float:
    """Allowed rounding error in ulps: half (round to nearest) on a GPU. Triton's CPU
    interpreter converts float32 to bf16 by truncation (its fp_trunc has no rounding), so a
    dry run on the CPU allows one whole bf16 ulp."""
    return 1.0 if device == "cpu" and dtype_name == "bfloat16" else 0.5


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _case_inputs(n: int, k: int, m: int, dtype_name: str, has_bias: bool, gen: Any, dev: Any) -> tuple:
    import torch

    a = torch.randint(-128, 128, (m, k), dtype=torch.int8, device=dev, generator=gen)
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=dev, generator=gen)
    # Scales that keep outputs O(1): |acc| ~ 73^2 sqrt(K).
    s = 1.0 / (73.0 * k**0.25)
    sa = (torch.rand((m, 1), device=dev, generator=gen) + 0.5) * s
    sb = (torch.rand((n,), device=dev, generator=gen) + 0.5) * s
    bias = torch.randn((n,), device=dev, generator=gen).to(getattr(torch, dtype_name)) if has_bias else None
    return a, w.t(), sa, sb, bias


def check_case(
    n: int, k: int, m: int, dtype_name: str, has_bias: bool, spec: Any, gen: Any, device: str = "cuda",
    tile: Any = None, route: str = "triton",
) -> dict[str, Any]:  # fmt: skip
    """One correctness case of the int8 GEMM, against float64 ``(A @ B) * scale_a * scale_b + bias``.

    The bound is elementwise: half an ulp of the output dtype at the reference (the one
    rounding the kernel makes; one ulp under the CPU interpreter, see :func:`rounding_ulps`)
    plus 2^-20 of |(A @ B) * scale_a * scale_b| + |bias| (its float32 epilogue). The int32
    accumulation is exact (float64 holds these sums exactly), so the kernel's raw accumulator
    must equal the integer product bit for bit, and ``torch._int_mm`` where it accepts the
    shape (M > 16). ``triton`` runs write into a NaN-poisoned buffer with :data:`GUARD` extra
    rows and columns: every element of the result must be written, none of the guard.
    ``route="sgl-kernel"`` checks sgl-kernel's kernel against the same bound (it allocates its
    own output, so only finiteness stands in for the poison)."""
    import torch

    from sglang_consumer_gpu.int8 import ops
    from sglang_consumer_gpu.int8.tiles import select_tile

    dev = torch.device(device)
    dtype = getattr(torch, dtype_name)
    a, b, sa, sb, bias = _case_inputs(n, k, m, dtype_name, has_bias, gen, dev)
    acc64 = a.double() @ b.double()  # exact: |sum| < 2^53
    prod = acc64 * sa.double() * sb.double()[None, :]
    ref = prod + bias.double()[None, :] if bias is not None else prod
    magnitude = prod.abs() + (bias.double().abs()[None, :] if bias is not None else 0.0)
    bound = (
        half_ulp(ref, dtype_name) * rounding_ulps(dtype_name, device) * 2 * (1 + 1e-6)
        + magnitude * EPILOGUE_REL
    )
    row: dict[str, Any] = {"n": n, "k": k, "m": m, "dtype": dtype_name, "bias": has_bias, "route": route}
    if route == "sgl-kernel":
        out = sgl_kernel_int8_scaled_mm()(a, b, sa, sb, dtype, bias)
        _sync(device)
        unwritten, guard, same_as_plain, acc_exact, acc_guard, int_mm_equal = (
            int((~torch.isfinite(out)).sum()), 0, True, True, 0, None)  # fmt: skip
    else:
        tile = tile if tile is not None else select_tile(spec, m, n, k)
        row["tile"] = tile.label()
        buf = torch.full((m + GUARD, n + GUARD), float("nan"), dtype=dtype, device=dev)
        out = ops.int8_scaled_mm(a, b, sa, sb, dtype, bias, tile=tile, out=buf[:m, :n])
        plain = ops.int8_scaled_mm(a, b, sa, sb, dtype, bias, tile=tile)
        _sync(device)
        unwritten = int(torch.isnan(out).sum())
        guard = int((~torch.isnan(buf[m:, :])).sum() + (~torch.isnan(buf[:m, n:])).sum())
        same_as_plain = bool(torch.equal(out, plain))
        lowest = torch.iinfo(torch.int32).min
        acc_buf = torch.full((m + GUARD, n + GUARD), lowest, dtype=torch.int32, device=dev)
        acc = ops.int8_mm_int32(a, b, tile=tile, out=acc_buf[:m, :n])
        _sync(device)
        acc_exact = bool(torch.equal(acc.double(), acc64))
        acc_guard = int((acc_buf[m:, :] != lowest).sum() + (acc_buf[:m, n:] != lowest).sum())
        int_mm_equal = None
        if m > 16:
            try:
                int_mm_equal = bool(torch.equal(acc, torch._int_mm(a, b)))
            except RuntimeError:
                int_mm_equal = bool(torch.equal(acc, torch._int_mm(a, b.contiguous())))
    err = (out.double() - ref).abs()
    ulps = err / (2 * half_ulp(ref, dtype_name))
    bad = int((err > bound).sum())
    ok = bad == 0 and unwritten == 0 and guard == 0 and acc_exact and acc_guard == 0 and same_as_plain
    row.update(
        max_err=float(err.max()) if err.numel() else 0.0,
        max_ulps=float(ulps.max()) if ulps.numel() else 0.0,
        max_err_vs_bound=float((err / bound).max()) if err.numel() else 0.0,
        over_bound=bad,
        unwritten=unwritten,
        guard_writes=guard + acc_guard,
        int32_exact=acc_exact,
        int32_equals_int_mm=int_mm_equal,
        ok=ok and int_mm_equal is not False,
    )
    return row


def as_check(row: dict[str, Any]) -> Check:
    """A :func:`check_case` row as a :class:`~sglang_consumer_gpu.measure.common.Check`."""
    return Check(ok=bool(row["ok"]), error=row["max_err_vs_bound"], bound=1.0,
                 metric="max elementwise error / bound", unwritten=row["unwritten"],
                 detail={k: v for k, v in row.items() if k not in ("ok", "unwritten")})  # fmt: skip


def extreme_case(spec: Any, device: str = "cuda", k: int = 18944) -> dict[str, Any]:
    """All -128: the largest accumulator magnitude int8 inputs can produce."""
    import torch

    from sglang_consumer_gpu.int8.ops import int8_mm_int32

    n, m = 256, 64
    a = torch.full((m, k), -128, dtype=torch.int8, device=device)
    b = torch.full((n, k), -128, dtype=torch.int8, device=device).t()
    acc = int8_mm_int32(a, b, spec=spec)
    want = 128 * 128 * k
    ok = bool((acc == want).all())
    return {"k": k, "expected": want, "all_equal": ok, "ok": ok}


def sgl_kernel_int8_scaled_mm() -> Callable[..., Any]:
    """``sgl_kernel.int8_scaled_mm`` (raises ImportError where sgl-kernel is not installed)."""
    import sgl_kernel

    return sgl_kernel.int8_scaled_mm


def sgl_kernel_available() -> tuple[bool, str]:
    """Does sgl-kernel's int8 GEMM import and run on this GPU? (``(ok, why)``)."""
    import torch

    try:
        fn = sgl_kernel_int8_scaled_mm()
        a = torch.ones((32, 32), dtype=torch.int8, device="cuda")
        fn(a, a.t(), torch.ones(32, 1, device="cuda"), torch.ones(32, device="cuda"), torch.bfloat16, None)
        torch.cuda.synchronize()
        return True, "sgl_kernel.int8_scaled_mm runs"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


# ------------------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Int8Case:
    """One GEMM: M tokens, N outputs, K inputs, output dtype, with or without bias."""

    m: int
    n: int
    k: int
    out_dtype: str = "bfloat16"
    bias: bool = False

    @property
    def label(self) -> str:
        return f"int8 M={self.m} N={self.n} K={self.k} {self.out_dtype}{' bias' if self.bias else ''}"


class Int8Run:
    """An :class:`Int8Case` built on ``device``: ``slots`` weight copies (default: more than
    twice the L2 together), random int8 activations and scales."""

    def __init__(self, case: Int8Case, *, device: str = "cuda", seed: int = 0, slots: int | None = None,
                 l2: int | None = None) -> None:  # fmt: skip
        import torch

        self.case, self.device, self.torch = case, device, torch
        gen = torch.Generator(device=device).manual_seed(seed)
        if slots is None:
            slots = rotation_slots(case.n * case.k, device_l2(device, l2), limit=64)
        self.weights = [torch.randint(-127, 128, (case.n, case.k), dtype=torch.int8, device=device, generator=gen)
                        for _ in range(slots)]  # fmt: skip
        self.slots = slots
        self.scale_b = torch.rand(case.n, device=device, generator=gen) + 0.5
        self.a = torch.randint(-128, 128, (case.m, case.k), dtype=torch.int8, device=device, generator=gen)
        self.scale_a = torch.rand(case.m, 1, device=device, generator=gen) + 0.5
        self.out_dtype = getattr(torch, case.out_dtype)
        self.bias = (
            torch.randn(case.n, device=device, generator=gen).to(self.out_dtype) if case.bias else None
        )
        pad = 32 - case.m if case.m <= 16 else 0  # _int_mm needs M > 16
        self.a_pad = torch.zeros((case.m + pad, case.k), dtype=torch.int8, device=device) if pad else None
        self.sa_pad = torch.zeros((case.m + pad, 1), device=device) if pad else None
        self._b_int_mm: list[Any] | None = None

    def _int_mm_weights(self) -> list[Any]:
        """Weights as ``_int_mm`` takes them: column-major if this torch accepts it, else copies."""
        if self._b_int_mm is None:
            t = self.torch
            try:
                t._int_mm(self.a_pad if self.a_pad is not None else self.a, self.weights[0].t())
                self._b_int_mm = [w.t() for w in self.weights]
            except RuntimeError:
                self._b_int_mm = [w.t().contiguous() for w in self.weights]
        return self._b_int_mm

    def run(self, route: str = "triton", *, spec: Any = None, tile: Any = None) -> Callable[[int], Any]:
        """``fn(i)``: the GEMM on weight copy ``i`` through ``route`` (see :data:`ROUTES`)."""
        t, c = self.torch, self.case
        if route == "triton":
            from sglang_consumer_gpu.int8.ops import int8_scaled_mm

            return lambda i: int8_scaled_mm(self.a, self.weights[i % self.slots].t(), self.scale_a, self.scale_b,
                                            self.out_dtype, self.bias, spec=spec, tile=tile)  # fmt: skip
        if route == "sgl-kernel":
            fn = sgl_kernel_int8_scaled_mm()
            return lambda i: fn(self.a, self.weights[i % self.slots].t(), self.scale_a, self.scale_b,
                                self.out_dtype, self.bias)  # fmt: skip
        if route not in ("torch", "int_mm"):
            raise ValueError(f"route must be one of {ROUTES}, not {route!r}")
        b = self._int_mm_weights()
        scaled = route == "torch"

        def fn(i: int) -> Any:
            a, sa = self.a, self.scale_a
            if self.a_pad is not None:
                self.a_pad[: c.m].copy_(self.a)
                a = self.a_pad
                if scaled:
                    self.sa_pad[: c.m].copy_(self.scale_a)
                    sa = self.sa_pad
            acc = t._int_mm(a, b[i % self.slots])
            if not scaled:
                return acc
            out = acc * sa * self.scale_b
            if self.bias is not None:
                out = out + self.bias
            return out.to(self.out_dtype)[: c.m]

        return fn

    def agree(self, route: str, other: str = "torch", **kw: Any) -> bool:
        """Do two routes give the same answer on weight copy 0 (within bf16 rounding)?"""
        a = self.run(route, **kw)(0).float()
        b = self.run(other, **kw)(0).float()
        return bool(self.torch.allclose(a, b, rtol=2e-2, atol=1e-2))

    def tops(self, us: float) -> float:
        return 2 * self.case.m * self.case.n * self.case.k / us / 1e6


# ------------------------------------------------------------------------------ compile jobs


@dataclass(frozen=True)
class Int8Job:
    """Compile the Triton int8 GEMM for one case and tile (a
    :class:`~sglang_consumer_gpu.measure.compile.Job`): warmed with the case's own M, N, K,
    since Triton specializes integer arguments by divisibility by 16."""

    case: Int8Case
    tile: tuple[int, ...]  # Tile.to_list()
    raw_acc: bool = False  # the int32-accumulator variant (correctness runs use both)

    @property
    def key(self) -> str:
        return f"{self.case.label}|{self.tile}|{'int32' if self.raw_acc else 'scaled'}"

    @property
    def group(self) -> str:
        return f"{self.tile}|{self.case.k % self.tile[2] == 0}|{self.case.out_dtype}|{self.case.bias}|{self.raw_acc}"

    @property
    def cost(self) -> float:
        return float(math.prod(self.tile[:3]))

    def warm(self) -> None:
        from sglang_consumer_gpu.int8.ops import int8_mm_int32
        from sglang_consumer_gpu.int8.tiles import Tile

        run = Int8Run(self.case, slots=1)
        tile = Tile.from_list(list(self.tile))
        if self.raw_acc:
            int8_mm_int32(run.a, run.weights[0].t(), tile=tile)
        else:
            run.run("triton", tile=tile)(0)
        _sync("cuda")
