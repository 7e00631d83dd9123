"""How a patch is declared, decided, applied and watched for: the machinery, none of the patches.

:mod:`.base` (what a seam and a patch are), :mod:`.decide` (the one decision: applies, not
needed, upstream fixed, target missing ...), :mod:`.registry` (applying and reverting, call-time
fallback), :mod:`.static` (checking a seam in SGLang's source without importing it),
:mod:`.watcher` (post-import hooks), :mod:`.launch_filter` (see one Triton launch),
:mod:`.catalog` (which patch modules exist). The patches themselves are the modules of
:mod:`sglang_consumer_gpu.patches`.
"""
