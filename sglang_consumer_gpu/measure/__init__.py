"""The measurement engine: SGLang's own kernels on the live GPU, checked and timed.

One module per kernel area, each with inputs for a shape (random data, NaN-poisoned outputs),
a run through SGLang's own launcher with a given config or tile, a float32/float64 torch
reference with a justified error bound, and compile jobs for :mod:`.compile`:

- :mod:`.moe`: fused MoE, both GEMMs (``MoeCase``, ``MoeLayer``, ``MoeJob``);
- :mod:`.attention`: extend and context (prefill) attention (``ExtendCase``/``ExtendRun``,
  ``PrefillCase``/``PrefillRun``, ``AttentionJob``, ``extend_choices``/``prefill_choices``:
  the tiles the plugin and SGLang's branches choose);
- :mod:`.int8`: the W8A8-INT8 scaled GEMM (``Int8Case``/``Int8Run``, ``check_case``,
  ``Int8Job``, ``MODEL_LAYERS``).

Shared: :mod:`.timer` (``Timer``: the one timer), :mod:`.compile` (``precompile``: compile in
parallel processes, time in one), :mod:`.common` (``Check``, ``judge``, ``environment``).
Built on them: :mod:`.moe_sweep` (SGLang's fused-MoE tuning space, proven by the oracle and
swept on the GPU: the benchmark rounds' method and a tuner's exhaustive reference).

Imports nothing heavy at package import; torch, Triton and SGLang load with the area modules.
"""
