"""Ask SGLang itself what a launch resolves to, on a GPU that is not here.

The user's ``launch_server`` flags go through SGLang's own argument parser
(``ServerArgs.add_cli_args``; its rejections are quoted, not re-worded) and
its resolution pipeline (``ServerArgs.resolve_once``: ``handle_gpu_memory_settings``
picks ``mem_fraction_static``, ``chunked_prefill_size`` and the CUDA-graph
batch sizes from the GPU's memory; DP attention, the attention and MoE
backends, the KV-cache dtype and page size are resolved there too) under
:func:`~sglang_consumer_gpu.oracle.virtual.virtual_gpu`, so SGLang's
capability and memory queries answer for the spec. SGLang reads the GPU's
memory with ``nvidia-smi`` (``get_nvgpu_memory_capacity``); inside
:func:`resolve_launch` that function answers the spec's memory instead.
The pipeline-stage layer split is SGLang's ``get_pp_indices``.

The resolution is SGLang's alone; where a family's patches change it, the family asks for it
again with the plugin's patches (``Family.launch_facts``), and the :class:`Launch` is then that
one, what a server with the plugin runs.

Importing SGLang's argument pipeline takes a few seconds; the modules it
imports lazily are imported before the virtual GPU is entered (see
``virtual_gpu``'s note on import-time constants).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.launch import Launch, set_flag
from sglang_consumer_gpu.oracle import answers

PIPELINE = "sglang.srt.arg_groups.pipeline"
#: Modules ``run_resolution_pipeline`` imports lazily that must load outside the virtual GPU.
EXTRA_PRELOAD = ("sglang.srt.model_loader",)
_KV_BYTES = {"fp8_e4m3": 1, "fp8_e5m2": 1, "fp8": 1, "fp4_e2m1": 1, "int8": 1}


class SglangRejects(ValueError):
    """SGLang's own parser or resolution refused the arguments; the message is SGLang's."""


class InvalidValue(ValueError):
    """A flag's value that no launch can have (``--tp-size 0``) and SGLang's parser takes: SGLang
    fails on it later, at a division or an allocation, without naming the flag."""


#: Flags that count GPUs, ranks or nodes (SGLang's ``ServerArgs`` field of each), all at least 1.
#: SGLang's own check covers ``--attn-dp-size``.
_COUNTS = ("tp_size", "pp_size", "ep_size", "dp_size", "nnodes", "attn_cp_size", "moe_dp_size", "dcp_size")
#: Flags that are positive integers when given (None: SGLang's default).
_POSITIVE_IF_GIVEN = {
    "context_length": "the model's own",
    "max_running_requests": "SGLang's default",
    "max_total_tokens": "SGLang's default",
}


def check_values(raw: argparse.Namespace) -> None:
    """Raise :class:`InvalidValue` for a parsed flag no launch can have, naming the flag and what
    to give instead; SGLang's parser takes any integer or float for these."""
    for name in _COUNTS:
        v = getattr(raw, name, 1)
        if v is not None and v < 1:
            flag = "--" + name.replace("_", "-")
            raise InvalidValue(f"{flag} must be a positive integer (got {v}): leave it out for 1")
    frac = getattr(raw, "mem_fraction_static", None)
    if frac is not None and not 0 < frac < 1:
        raise InvalidValue(
            f"--mem-fraction-static must be between 0 and 1 (got {frac}): the share of GPU memory for "
            "the weights and the KV cache; leave it out for SGLang's default"
        )
    for name, default in _POSITIVE_IF_GIVEN.items():
        v = getattr(raw, name, None)
        if v is not None and v < 1:
            flag = "--" + name.replace("_", "-")
            raise InvalidValue(f"{flag} must be a positive integer (got {v}): leave it out for {default}")


#: Flags the planner does not pass on: it reads config.json with transformers' own config
#: classes and never runs a checkpoint's code.
DROPPED_FLAGS = ("--trust-remote-code",)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Notes(logging.Handler):
    """Collects what SGLang logs (warning and up) while it resolves, as notes for the user."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.add(record.getMessage())

    def add(self, text: str) -> None:
        for line in _ANSI.sub("", text).strip().splitlines():
            if line.strip() and line.strip() not in self.lines:
                self.lines.append(line.strip())


@contextlib.contextmanager
def _captured(notes: _Notes) -> Iterator[None]:
    """SGLang's log records and prints go to ``notes`` instead of the terminal."""
    root = logging.getLogger("sglang")
    saved = root.propagate, root.level
    out, err = io.StringIO(), io.StringIO()
    root.addHandler(notes)
    root.propagate = False
    root.setLevel(logging.WARNING)
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(notes)
        root.propagate, _ = saved
        root.setLevel(saved[1])
        notes.add(out.getvalue())
        notes.add(err.getvalue())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit
        raise SglangRejects(message)


def _preload() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = importlib.import_module(PIPELINE)
        source = Path(pipeline.__file__).read_text(encoding="utf-8")
        for name in sorted(set(re.findall(r"from (sglang\.[\w.]+) import", source))) + list(EXTRA_PRELOAD):
            importlib.import_module(name)


def parse_args(model_dir: str, argv: Sequence[str]) -> Any:
    """SGLang's ``ServerArgs`` for ``--model-path model_dir argv`` (unresolved)."""
    from sglang.srt.server_args import ServerArgs

    parser = _Parser(prog="sglang serve", add_help=False)
    ServerArgs.add_cli_args(parser)
    args = ["--model-path", str(model_dir), *argv]
    if "--config" in args:
        from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger

        args = ConfigArgumentMerger(parser).merge_config_with_args(args)
    raw = parser.parse_args(args)
    check_values(raw)
    raw._radix_eviction_policy_explicitly_set = "--radix-eviction-policy" in " ".join(args)
    return ServerArgs.from_cli_args(raw)


@contextlib.contextmanager
def _gpu_memory(mib: float) -> Iterator[None]:
    from sglang_consumer_gpu.patching.sglang_device import SGLANG_COMMON

    common = importlib.import_module(SGLANG_COMMON)

    saved = common.get_nvgpu_memory_capacity
    common.get_nvgpu_memory_capacity = lambda: mib
    try:
        yield
    finally:
        common.get_nvgpu_memory_capacity = saved


def _resolve(
    spec: GpuSpec, model_dir: str, argv: Sequence[str], mib: float, notes: _Notes, *, patched: bool = False
) -> Any:
    """SGLang's resolution of ``argv`` on ``spec``, alone or with the plugin's patches (``patched``)."""
    from sglang_consumer_gpu.families import on_gpu

    try:
        with _captured(notes):
            sa = parse_args(model_dir, [a for a in argv if a not in DROPPED_FLAGS])
            with on_gpu(spec, patched=patched), _gpu_memory(mib):
                sa.resolve_once()
                sa.check_server_args()  # what launch_server checks next, before any GPU work
    except (SglangRejects, InvalidValue):
        raise
    except (
        ValueError,
        AssertionError,
        NotImplementedError,
        RuntimeError,
        TypeError,
        KeyError,
        OSError,
    ) as exc:
        text = str(exc).strip() or type(exc).__name__
        raise SglangRejects(text) from None
    return sa


@contextlib.contextmanager
def other_checkpoint(config_path: str) -> Iterator[str]:
    """A model directory holding this model's config.json without its ``quantization_config``,
    for asking SGLang about a different checkpoint of the same model (its quantization then
    comes from ``--quantization``, or it is 16-bit)."""
    import json
    import tempfile

    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    cfg.pop("quantization_config", None)
    with tempfile.TemporaryDirectory(prefix="sglang-consumer-gpu-ckpt-") as tmp:
        Path(tmp, "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        yield tmp


class _WithPlugin:
    """SGLang's resolution of a launch with the plugin's patches, made the first time a family
    asks for it (:meth:`~sglang_consumer_gpu.families.base.Family.launch_facts`); where SGLang
    refuses the launch that way, SGLang alone's, with a note saying so."""

    def __init__(self, resolve: Callable[[], Any], alone: Any) -> None:
        self._resolve, self.alone = resolve, alone
        self.server_args: Any = None
        self.note = ""

    def __call__(self) -> Any:
        if self.server_args is None:
            try:
                self.server_args = self._resolve()
            except (SglangRejects, InvalidValue) as exc:
                self.server_args = self.alone
                self.note = f"with the plugin's patches SGLang refuses this launch ({exc}); SGLang alone's resolution is shown"
        return self.server_args


#: The refusals an answer may hold, by class name (the classes above).
_REFUSALS = ("SglangRejects", "InvalidValue")


def _answer_key(spec: GpuSpec, model_dir: str, argv: Sequence[str], gpu_bytes: float) -> str | None:
    return answers.key("sglang-launch", spec=spec.to_dict(), model=answers.files_of(model_dir), argv=list(argv),
                       gpu_bytes=gpu_bytes)  # fmt: skip


def _answer(value: Any) -> bool:
    """A cached launch answer: a ``Launch``, or (refusal class name, SGLang's message)."""
    return isinstance(value, Launch) or (
        isinstance(value, tuple) and len(value) == 2 and value[0] in _REFUSALS and isinstance(value[1], str)
    )


def known(spec: GpuSpec, model_dir: str, argv: Sequence[str], gpu_bytes: float) -> bool:
    """Whether :func:`resolve_launch` answers from the cache (without importing SGLang)."""
    return answers.get(_answer_key(spec, model_dir, argv, gpu_bytes), _answer) is not None


def resolve_launch(spec: GpuSpec, model_dir: str, argv: Sequence[str], gpu_bytes: float) -> Launch:
    """The :class:`Launch` SGLang 0.5.23 resolves for ``argv`` on ``spec``, with each family's facts
    about the resolution: SGLang alone's, or with the plugin's patches where a family asks for that
    (then that one: what a server with the plugin runs). Answered from the answer cache
    (:mod:`~sglang_consumer_gpu.oracle.answers`; its key holds the model directory's JSON files) when
    the same question was asked before.

    Raises :class:`SglangRejects` (or :class:`InvalidValue`) with SGLang's message when it refuses them.
    """
    k = _answer_key(spec, model_dir, argv, gpu_bytes)
    hit = answers.get(k, _answer)
    if isinstance(hit, Launch):
        return hit
    if hit is not None:
        raise (SglangRejects if hit[0] == SglangRejects.__name__ else InvalidValue)(hit[1])
    try:
        launch = _resolve_launch(spec, model_dir, argv, gpu_bytes)
    except (SglangRejects, InvalidValue) as exc:
        answers.put(k, (type(exc).__name__, str(exc)))
        raise
    answers.put(k, launch)
    return launch


def _resolve_launch(spec: GpuSpec, model_dir: str, argv: Sequence[str], gpu_bytes: float) -> Launch:
    _preload()
    from sglang.srt.arg_groups.overrides import model_config_of, resolving_view
    from sglang.srt.distributed.utils import get_pp_indices

    from sglang_consumer_gpu.families import FAMILIES

    mib = gpu_bytes / 2**20
    notes = _Notes()
    alone = _resolve(spec, model_dir, argv, mib, notes)
    with_plugin = _WithPlugin(lambda: _resolve(spec, model_dir, argv, mib, _Notes(), patched=True), alone)
    facts = {f.name: fact for f in FAMILIES if (fact := f.launch_facts(spec, alone, with_plugin)) is not None}
    sa = with_plugin.server_args or alone
    cfg = resolving_view(sa)
    user_fraction = any(a == "--mem-fraction-static" or a.startswith("--mem-fraction-static=") for a in argv)
    default = cfg.mem_fraction_static
    if user_fraction:
        default = resolving_view(
            _resolve(spec, model_dir, set_flag(argv, "--mem-fraction-static", None), mib, _Notes())
        ).mem_fraction_static
    mc = model_config_of(sa)
    graphs = cfg.cuda_graph_config
    decode = graphs.decode
    prefill = graphs.prefill
    pp = int(cfg.pp_size)
    layers = int(getattr(mc, "num_hidden_layers", 0) or 0)
    kv = str(cfg.kv_cache_dtype)
    model_dtype = str(getattr(mc, "dtype", "bfloat16")).replace("torch.", "")
    return Launch(
        argv=tuple(argv),
        tp=int(cfg.tp_size),
        pp=pp,
        ep=int(cfg.ep_size),
        dp=int(cfg.dp_size),
        attn_dp_size=int(getattr(cfg, "attn_dp_size", 1) or 1),
        nnodes=int(cfg.nnodes),
        enable_dp_lm_head=bool(getattr(cfg, "enable_dp_lm_head", False)),
        moe_dense_tp=getattr(cfg, "moe_dense_tp_size", None),
        kv_cache_dtype=kv,
        kv_bytes=_KV_BYTES.get(kv, 4 if kv == "float32" else 2),
        model_dtype=model_dtype,
        quantization_flag=cfg.quantization,
        mem_fraction_static=float(cfg.mem_fraction_static),
        default_mem_fraction_static=float(default),
        gpu_mem_mib=mib,
        chunked_prefill_size=int(cfg.chunked_prefill_size or 0),
        decode_graph_bs=tuple(int(b) for b in (decode.bs or ())),
        prefill_graph_bs=tuple(int(b) for b in (prefill.bs or ()))
        if str(prefill.backend) != "disabled"
        else (),
        decode_graph=str(decode.backend) != "disabled",
        max_running_requests=cfg.max_running_requests,
        max_total_tokens=cfg.max_total_tokens,
        context_len=int(mc.context_len),
        page_size=int(cfg.page_size or 1),
        attention_backend=str(cfg.attention_backend or ""),
        moe_runner_backend=str(cfg.moe_runner_backend),
        pp_layers=tuple(get_pp_indices(layers, r, pp) for r in range(pp)) if layers else (),
        disable_custom_all_reduce=bool(cfg.disable_custom_all_reduce),
        enable_p2p_check=bool(cfg.enable_p2p_check),
        notes=tuple(f"SGLang: {line}" for line in notes.lines) + ((with_plugin.note,) if with_plugin.note else ()),
        facts=facts,
    )
