"""`sglang-consumer-gpu` command line: one module per subcommand.

Each subcommand module defines ``register(subparsers)`` which adds its parser
and sets ``func`` (returning the process exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
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
#: Subcommands that hand the environment on to the user's own program untouched (no cache redirect).
KEEPS_ENVIRONMENT = ("emulate",)


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
    """Run one subcommand. Bad input, Ctrl-C and a closed output pipe end in one line (or none) and an
    exit status, never a traceback: 2 bad input, 130 interrupted, 141 the reader of stdout went away
    (``doctor | head -1``; what a shell reports for a tool that SIGPIPE ended)."""
    command = "sglang-consumer-gpu"
    try:
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
        command = f"sglang-consumer-gpu {args.command}"
        try:
            blank_option(args)
            if args.command not in KEEPS_ENVIRONMENT:
                from sglang_consumer_gpu.cli.caches import ensure_writable_caches

                ensure_writable_caches()
            code = int(args.func(args) or 0)
        except ValueError as exc:  # bad input: say what is wrong, no traceback
            print(f"{command}: error: {exc}", file=sys.stderr)
            return 2
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush stays quiet.
        with contextlib.suppress(OSError, ValueError):  # ValueError: a stdout without a file descriptor
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 128 + signal.SIGPIPE


def blank_option(args: argparse.Namespace) -> None:
    """An option given an empty value (``--gpu ""``, ``--gpu "$UNSET"``) is bad input, not the option left out."""
    for dest, value in vars(args).items():
        if dest != "command" and isinstance(value, str) and not value.strip():
            flag = "--" + dest.replace("_", "-")
            raise ValueError(
                f"{flag} was given an empty value (an unset shell variable?): give one, or leave {flag} out"
            )
