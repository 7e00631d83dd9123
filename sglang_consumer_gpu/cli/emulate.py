"""`emulate`: run a command as if on another GPU, on this one.

    sglang-consumer-gpu emulate --gpu "RTX 4090" -- python -m sglang.launch_server ...
    sglang-consumer-gpu emulate --gpu "RTX 3090" --limit-only -- python -m sglang.bench_one_batch ...
    sglang-consumer-gpu emulate --smem 101376 -- python -m sglang.launch_server ...

``--gpu`` is the arch-faithful emulation (docs/emulation.md): Triton generates the
target's code, launches are checked against its shared memory per block and
padded to its residency per SM, and torch, SGLang and the plugin see its name,
capability and SM count. ``--limit-only`` (or ``--smem``) emulates only the
shared-memory limit, for sm_90 code. Sets the environment variable and replaces
this process with the command; the plugin's ``.pth`` hook applies it in every
Python process the command starts. Without a command it prints the ``export`` line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from sglang_consumer_gpu.emulation import ENV_SMEM
from sglang_consumer_gpu.hardware import KNOWN_GPUS, find_gpu
from sglang_consumer_gpu.hardware.emulated import ArchEmulation
from sglang_consumer_gpu.settings import EMULATE_GPU

#: The most shared memory per block any GPU in the catalog has (H100/H200): a cap above it emulates nothing.
_MAX_SMEM = max(g.smem_per_block_optin for g in KNOWN_GPUS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulate",
        help="run a command as if on another GPU: its code generation, limits and residency (or only its limit)",
        description=__doc__.split("\n\n")[0],
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--gpu", metavar="NAME", help='a catalog GPU to emulate, e.g. "RTX 4090"')
    what.add_argument("--smem", metavar="BYTES", help="only a shared-memory limit per block, e.g. 101376")
    p.add_argument(
        "--limit-only",
        action="store_true",
        help="with --gpu: emulate only its shared memory per block (sm_90 code under its limit)",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command to run, after --")
    p.set_defaults(func=run)


def _smem(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value <= _MAX_SMEM:
        raise ValueError(
            f"--smem {raw}: give a number of bytes per block between 1 and {_MAX_SMEM:,} (the most any known "
            "GPU allows), e.g. --smem 101376, an RTX 4090's"
        )
    from sglang_consumer_gpu.hardware.current import real_specs

    live = real_specs()
    limit = min(s.smem_per_block_optin for s in live) if live else None
    if limit is not None and value >= limit:
        raise ValueError(
            f"--smem {value}: the GPU here allows {limit:,} B per block already, so the cap would emulate "
            "nothing; give fewer bytes (e.g. --smem 101376, an RTX 4090's)"
        )
    return value


def _setting(args: argparse.Namespace) -> tuple[str, str, str]:
    """(environment variable, value, the line to tell the user) for the arguments."""
    if args.smem is not None:
        if args.limit_only:
            raise ValueError("--limit-only goes with --gpu; --smem is a limit already")
        cap = _smem(args.smem)
        return ENV_SMEM, str(cap), f"emulating a shared-memory limit of {cap:,} B per block (sm_90 code)"
    target = find_gpu(args.gpu)
    if args.limit_only:
        cap = target.smem_per_block_optin
        return ENV_SMEM, str(cap), f"emulating the {target.name}'s limit of {cap:,} B per block (sm_90 code)"
    from sglang_consumer_gpu.hardware.current import real_specs

    hosts = real_specs()
    if not hosts:
        return EMULATE_GPU, target.name, f"no NVIDIA GPU here: {target.name} is emulated once this runs on one"
    emulation = ArchEmulation(target, min(hosts, key=lambda s: s.smem_per_block_optin))
    why = emulation.refusal()
    if why:
        raise ValueError(why)
    return EMULATE_GPU, target.name, emulation.describe()


def run(args: argparse.Namespace) -> int:
    name, value, line = _setting(args)
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print(f"export {name}={shlex.quote(value)}")
        return 0
    print(f"sglang-consumer-gpu: {line}", file=sys.stderr)
    if "sglang_consumer_gpu._pth" not in sys.modules:
        print(
            "sglang-consumer-gpu emulate: warning: the plugin's .pth hook is not active in this Python "
            "(plugin not pip-installed here?); Python processes the command starts may not see the emulation",
            file=sys.stderr,
        )
    env = {k: v for k, v in os.environ.items() if k not in (EMULATE_GPU, ENV_SMEM)}
    env[name] = value
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"sglang-consumer-gpu emulate: error: cannot run {shlex.join(command)}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process
