"""`emulate`: run a command with a consumer GPU's shared-memory limit emulated on this GPU.

    sglang-consumer-gpu emulate --smem 101376 -- python -m sglang.launch_server ...
    sglang-consumer-gpu emulate --gpu "RTX 4090" -- python -m sglang.bench_one_batch ...

Sets ``SGLANG_CONSUMER_GPU_EMULATE_SMEM`` and replaces this process with the
command; the plugin's ``.pth`` hook applies the cap in every Python process the
command starts (see :mod:`sglang_consumer_gpu.emulation`). Without a command it
prints the ``export`` line instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from sglang_consumer_gpu.emulation import ENV_SMEM
from sglang_consumer_gpu.hardware import find_gpu


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emulate",
        help="run a command with a smaller GPU's shared memory per block emulated (Triton, torch, plugin)",
        description=__doc__.split("\n\n")[0],
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--smem", metavar="BYTES", help="shared memory per block to report, e.g. 101376")
    what.add_argument("--gpu", metavar="NAME", help='take the limit of a catalog GPU, e.g. "RTX 4090"')
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command to run, after --")
    p.set_defaults(func=run)


def _cap(args: argparse.Namespace) -> int:
    if args.gpu:
        return find_gpu(args.gpu).smem_per_block_optin
    try:
        value = int(args.smem)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"--smem wants a positive number of bytes (e.g. 101376), not {args.smem!r}")
    return _below_real_limit(value)


def _below_real_limit(value: int) -> int:
    """``value`` if a cap of it emulates something: below the live GPU's limit per block, and no
    more than the largest any catalog GPU has; a larger cap would silently change nothing."""
    from sglang_consumer_gpu.hardware import KNOWN_GPUS, live_specs

    live = [s for s in live_specs() if "emulated" not in s.source]  # a cap set already hides the real limit
    limit = min(s.smem_per_block_optin for s in live) if live else None
    if limit is not None and value >= limit:
        raise ValueError(
            f"--smem {value}: the GPU here allows {limit:,} B per block already, so the cap would emulate "
            "nothing; give fewer bytes (e.g. --smem 101376, an RTX 4090's)"
        )
    largest = max(g.smem_per_block_optin for g in KNOWN_GPUS)
    if value > largest:
        raise ValueError(
            f"--smem {value}: no known GPU allows more than {largest:,} B of shared memory per block; "
            "give a GPU's limit (e.g. --smem 101376, an RTX 4090's)"
        )
    return value


def run(args: argparse.Namespace) -> int:
    cap = _cap(args)
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print(f"export {ENV_SMEM}={cap}")
        return 0
    if "sglang_consumer_gpu._pth" not in sys.modules:
        print(
            "sglang-consumer-gpu emulate: warning: the plugin's .pth hook is not active in this Python "
            "(plugin not pip-installed here?); Python processes the command starts may not see the cap",
            file=sys.stderr,
        )
    env = {**os.environ, ENV_SMEM: str(cap)}
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"sglang-consumer-gpu emulate: error: cannot run {shlex.join(command)}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process
