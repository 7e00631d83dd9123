"""`sglang-consumer-gpu` command line: one module per subcommand.

Each subcommand module defines ``register(subparsers)`` which adds its parser
and sets ``func`` (returning the process exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sglang_consumer_gpu import __version__

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "sglang_consumer_gpu.cli.doctor",
    "sglang_consumer_gpu.cli.moe_config",
    "sglang_consumer_gpu.cli.check",
    "sglang_consumer_gpu.cli.emulate",
    "sglang_consumer_gpu.cli.selftest",
    "sglang_consumer_gpu.cli.bench",
    "sglang_consumer_gpu.cli.tune_moe",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sglang-consumer-gpu",
        description="SGLang on consumer and workstation NVIDIA GPUs: what is patched, what fits, what to do.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_sglang_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.sglang_args = extra  # doctor --model hands these to SGLang's own parser
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: say what is wrong, no traceback
        print(f"sglang-consumer-gpu {args.command}: error: {exc}", file=sys.stderr)
        return 2
