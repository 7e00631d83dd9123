"""The launch command ``doctor --model`` prints: the user's flags plus every fix it recommends, re-checked.

The suggestions (:mod:`.suggest`) each change one thing and are judged alone; a user wants one
line to run. Starting from the user's flags, the best suggestion that needs no other checkpoint
is taken, then every flag and environment variable a finding names as its fix (a backend with
kernels for the GPU, ``--disable-custom-all-reduce`` on GeForce cards without peer access,
``SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0`` ...); the result is judged once more by the same
planner (environment included) and kept only where it is no worse than the user's own launch.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sglang_consumer_gpu.models.launch import apply_fix
from sglang_consumer_gpu.planner.suggest import RANK, Evaluate, Suggestion
from sglang_consumer_gpu.planner.verdict import Assessment


@dataclass(frozen=True)
class LaunchCommand:
    """A ready-to-run launch and the planner's verdict on it."""

    model: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    result: Assessment | None = None
    changes: tuple[str, ...] = ()  # what was added to the user's launch, in words

    @property
    def line(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        cmd = shlex.join(["python", "-m", "sglang.launch_server", "--model-path", self.model, *self.argv])
        return f"{env} {cmd}" if env else cmd

    def to_dict(self) -> dict[str, object]:
        return {
            "command": self.line,
            "argv": list(self.argv),
            "env": self.env,
            "changes": list(self.changes),
            "verdict": self.result.verdict if self.result else None,
        }


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fixes(result: Assessment) -> tuple[list[tuple[str, str]], dict[str, str]]:
    flags = list(dict.fromkeys(f.fix for f in result.findings if f.fix))
    env = {f.env[0]: f.env[1] for f in result.findings if f.env and f.env[0] not in os.environ}
    return flags, env


def launch_command(
    base: Assessment, suggestions: Sequence[Suggestion], evaluate: Evaluate, model: str
) -> LaunchCommand:
    """``base``'s launch with the fixes folded in (module docstring); ``model`` as the user named it."""
    argv, changes = tuple(base.launch.argv), []
    start = next((s for s in suggestions if not s.needs_other_checkpoint), None)
    result = base
    if start is not None:
        argv, result = start.argv, start.result
        changes.append(start.change)
    flags, env = _fixes(result)
    todo = [f for f in flags if apply_fix(argv, f) != argv]
    if not todo and not env:
        return LaunchCommand(model, argv, {}, result, tuple(changes))
    fixed = argv
    for fix in todo:
        fixed = apply_fix(fixed, fix)
    with _environ(env):
        try:
            checked = evaluate(fixed, base.desc, False)
        except Exception:  # a fix SGLang refuses: keep what was already checked
            return LaunchCommand(model, argv, {}, result, tuple(changes))
    if RANK[checked.verdict] > RANK[result.verdict]:
        return LaunchCommand(model, argv, {}, result, tuple(changes))
    changes += [" ".join(f).strip() for f in todo] + [f"{k}={v}" for k, v in env.items()]
    return LaunchCommand(model, fixed, env, checked, tuple(changes))
