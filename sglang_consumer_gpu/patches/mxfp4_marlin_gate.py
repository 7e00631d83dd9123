"""MXFP4 experts on Marlin below Hopper: lift SGLang's test-scope gate on sm_80-sm_89.

What it changes: two methods that turn loaded MXFP4 experts into Marlin's layout,
``Mxfp4MoEMethod.process_weights_after_loading`` (``sglang.srt.layers.quantization.mxfp4``:
gpt-oss and other ``quant_method: mxfp4`` checkpoints) and
``Mxfp4MarlinMoEMethod.process_weights_after_loading`` (``...quantization.mxfp4_marlin_moe``:
FP8 checkpoints with MXFP4 experts, e.g. DeepSeek-V4-Flash). Each refuses to go on unless
the GPU is Hopper or Blackwell::

    if not get_platform().is_sm90 and not get_platform().is_sm100 and not get_platform().is_sm120:
        raise RuntimeError("MXFP4 Marlin requires SM90+.")        # mxfp4.py:650-655

The replacement is SGLang's own method, compiled from its installed source with one change:
that ``if`` (found by its ``raise RuntimeError("MXFP4 Marlin requires ...")``) also needs
:func:`sglang_consumer_gpu.backends.mxfp4_marlin_gate_opens` to be false for the current GPU,
so on sm_80-sm_89 the method carries on into SGLang's Marlin preparation
(``check_moe_marlin_supports_layer``, ``prepare_moe_mxfp4_layer_for_marlin``), the same code
sm_120 runs. Everything else, errors included, is SGLang's; the gate opening is logged once.

Why: the gate is test scope, not hardware: Marlin's MoE kernel (``moe_wna16_marlin``) guards
``__CUDA_ARCH__ >= 800`` and SGLang's Marlin runner already handles sm_8x (no bf16 atomic
add below sm_90, ``fused_marlin_moe.py:310``); sgl-project/sglang#33937 and #33589 lift it
upstream (open). Without it ``--moe-runner-backend marlin`` on an RTX 3090/4090 or L40S dies
after every weight has loaded, and the remaining sm_8x paths either need OpenAI's
``triton_kernels`` at EP 1 or upcast the experts to bf16 (3.8x their MXFP4 size).

Versions: the gate of ``Mxfp4MoEMethod`` exists from SGLang 0.5.12, ``Mxfp4MarlinMoEMethod``
from 0.5.14 (before, neither runs MXFP4 on Marlin: "version not covered"). CI checks each
gate in every covered wheel that has it (the method, its parameters, and one gate inside
it); the rewrite finds the gate by its message,
so the condition's spelling (``is_sm90_supported()`` in older releases,
``get_platform().is_sm90`` now) does not matter. A method whose source cannot be read or
recompiled (a decorator, ``super()``) is left alone: the registry reports the failure and
SGLang's method runs.

Upstream-fix detection: no gate in the method ("already fixed upstream"). A relaxed gate
(#33589 keeps the message) is rewritten harmlessly: a gate that opens stays open.
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.backends import mxfp4_marlin_gate_opens
from sglang_consumer_gpu.errors import not_ours
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.log import log_once

logger = logging.getLogger("sglang_consumer_gpu")

#: The gate's ``raise RuntimeError(...)`` message starts with this.
MESSAGE = "MXFP4 Marlin requires"
METHOD = "process_weights_after_loading"
#: SGLang's two MXFP4 MoE methods' modules (gpt-oss checkpoints; FP8 checkpoints with MXFP4 experts).
MXFP4 = "sglang.srt.layers.quantization.mxfp4"
MXFP4_MARLIN_MOE = "sglang.srt.layers.quantization.mxfp4_marlin_moe"
_OPEN = "__sglang_consumer_gpu_gate_open__"
_FACTORY = "__sglang_consumer_gpu_factory__"



def _is_gate(node: ast.AST) -> bool:
    """``if ...: raise RuntimeError("MXFP4 Marlin requires ...")``."""
    if not (isinstance(node, ast.If) and len(node.body) == 1 and not node.orelse):
        return False
    stmt = node.body[0]
    exc = stmt.exc if isinstance(stmt, ast.Raise) else None
    return (
        isinstance(exc, ast.Call)
        and isinstance(exc.func, ast.Name)
        and exc.func.id == "RuntimeError"
        and len(exc.args) == 1
        and isinstance(exc.args[0], ast.Constant)
        and str(exc.args[0].value).startswith(MESSAGE)
    )


def gate_problem(function: ast.FunctionDef) -> str:
    """Why the gate in ``function`` cannot be lifted ("" if it can)."""
    gates = [n for n in ast.walk(function) if _is_gate(n)]
    if len(gates) != 1:
        return f"{len(gates)} '{MESSAGE} ...' gates in {function.name} (expected 1)"
    if function.decorator_list:
        return f"{function.name} is decorated"
    if any(isinstance(n, ast.Name) and n.id in ("super", "__class__") for n in ast.walk(function)):
        return f"{function.name} uses super()"
    return ""


def find_method(tree: ast.Module, cls: str, name: str = METHOD) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    return None


def gate_in_source(source: str, cls: str) -> str:
    """The static check CI runs on every wheel: "" when ``cls.process_weights_after_loading``
    holds exactly one liftable gate, else what is wrong."""
    method = find_method(ast.parse(source), cls)
    return f"{cls}.{METHOD} not found" if method is None else gate_problem(method)


class _LiftGate(ast.NodeTransformer):
    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        if _is_gate(node):
            opens = ast.Call(func=ast.Name(id=_OPEN, ctx=ast.Load()), args=[], keywords=[])
            node.test = ast.BoolOp(op=ast.And(), values=[node.test, ast.UnaryOp(op=ast.Not(), operand=opens)])
        return node


def lift_gate(
    original: Callable[..., Any], module: ModuleType, opens: Callable[[], bool]
) -> Callable[..., Any]:
    """SGLang's method recompiled from its source with the gate also requiring ``not opens()``;
    it runs in the module's own globals, so every name resolves as in SGLang."""
    source = textwrap.dedent(inspect.getsource(original))
    tree = ast.parse(source)
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef):
        raise TypeError(f"{original.__qualname__} is not a plain function")
    problem = gate_problem(function)
    if problem:
        raise ValueError(problem)
    function = _LiftGate().visit(function)
    factory = ast.FunctionDef(
        name=_FACTORY,
        args=ast.arguments(
            posonlyargs=[], args=[ast.arg(arg=_OPEN)], kwonlyargs=[], kw_defaults=[], defaults=[]
        ),
        body=[function, ast.Return(value=ast.Name(id=function.name, ctx=ast.Load()))],
        decorator_list=[],
    )
    wrapped = ast.Module(body=[factory], type_ignores=[])
    ast.fix_missing_locations(wrapped)
    ast.increment_lineno(wrapped, original.__code__.co_firstlineno - 1)
    namespace: dict[str, Any] = {}
    exec(compile(wrapped, original.__code__.co_filename, "exec"), vars(module), namespace)
    lifted = namespace[_FACTORY](opens)
    lifted.__qualname__ = original.__qualname__
    return lifted


def _gate_opens(where: str) -> Callable[[], bool]:
    def opens() -> bool:
        spec = current_spec()
        if spec is None or not mxfp4_marlin_gate_opens(spec):
            return False
        log_once(
            logger,
            where,
            logging.INFO,
            "sglang-consumer-gpu: MXFP4 experts on %s: SGLang's gate '%s SM90+' lifted in %s; "
            "Marlin's MoE kernel runs on sm_80+",
            spec.arch_name,
            MESSAGE,
            where,
        )
        return True

    return opens


#: (SGLang's method, where) -> its lifted copy, compiled once however often the patches are re-applied
#: (``families.on_gpu`` re-applies them for each GPU it enters).
_lifted: dict[tuple[Callable[..., Any], str], Callable[..., Any]] = {}


def _build(where: str) -> Callable[[Callable[..., Any], ModuleType], Callable[..., Any]]:
    def build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
        key = (original, where)
        if key not in _lifted:
            _lifted[key] = lift_gate(original, module, _gate_opens(where))
        lifted = _lifted[key]

        def process_weights_after_loading(self: Any, layer: Any) -> Any:
            try:
                return lifted(self, layer)
            except Exception as exc:  # SGLang's own code raised: never re-run it on a half-converted layer
                raise not_ours(exc) from None

        return process_weights_after_loading

    return build


@functools.cache
def _without_gate(path: str, cls: str) -> bool:
    """``cls.process_weights_after_loading`` in the file at ``path`` exists and has no gate
    (cached: the patches are re-applied for each GPU the tools enter, and the file does not change)."""
    try:
        method = find_method(ast.parse(Path(path).read_text(encoding="utf-8")), cls)
    except (OSError, SyntaxError, ValueError):
        return False
    return method is not None and not any(_is_gate(n) for n in ast.walk(method))


def _upstream_fixed(cls: str) -> Callable[[ModuleType], bool]:
    def fixed(module: ModuleType) -> bool:
        path = getattr(module, "__file__", None)
        return bool(path) and _without_gate(path, cls)

    return fixed


def explain(spec: GpuSpec) -> str:
    return "MXFP4 experts may run Marlin on sm_80-sm_89 (SGLang's SM90+ gate lifted)"


def _patch(name: str, versions: str, module: str, cls: str, says: str) -> Patch:
    return Patch(
        name=name,
        seams=(Seam(versions, module, f"{cls}.{METHOD}", ("self", "layer")),),
        why=f"{cls} refuses Marlin below sm_90 ('{MESSAGE} {says}', after loading the weights) although "
        "Marlin's MoE kernel runs on sm_80+ (sgl-project/sglang#33937)",
        build=_build(cls),
        needed_on=mxfp4_marlin_gate_opens,
        upstream_fixed=_upstream_fixed(cls),
        explain=explain,
    )


PATCHES = [
    _patch("mxfp4-marlin-gate", ">=0.5.12", MXFP4, "Mxfp4MoEMethod", "SM90+."),
    _patch("mxfp4-marlin-gate-fp4-experts", ">=0.5.14", MXFP4_MARLIN_MOE, "Mxfp4MarlinMoEMethod", "SM90 or SM120."),
]
