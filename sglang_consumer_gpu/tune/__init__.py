"""``tune-moe``: tune SGLang's fused-MoE kernel for one layer shape on the live GPU, in minutes.

SGLang's own tuning script times every config of its space at every batch size (hours on an
RTX 4090). This package finds what that exhaustive search finds, compiling and timing a small
part of it:

- :mod:`.space`: SGLang's tuning space pruned to the configs the analytic shared-memory bound
  admits on the target GPU (nothing that cannot fit is compiled), their neighbours, the
  GROUP_SIZE_M variants that can change the launch order, and the kernel specialization a
  batch size compiles (Triton specializes integer arguments by divisibility by 16);
- :mod:`.search`: the search itself, GPU-free -- heuristic and SGLang's default as seeds, a
  local search over neighbours shared by all batch sizes (adjacent batch sizes seed each
  other; a compiled kernel serves every batch size of its specialization), compiles in
  parallel waves, early exits for clearly worse configs, GROUP_SIZE_M refinement, finalists
  re-timed interleaved, a separate down-projection config only where it measurably wins;
- :mod:`.bench`: the live-GPU side (compile processes that ask the oracle first, SGLang's own
  kernel through :mod:`sglang_consumer_gpu.measure`, the engine's timer);
- :mod:`.state`: resumable state and the per-output lock; :mod:`.output`: SGLang's JSON files,
  written atomically into the directory the plugin's lookup reads first, with a sidecar
  recording the Triton version and the report; :mod:`.report`: the per-batch-size table;
- :mod:`.run`: one call that ties them together (the CLI and the device check use it).
"""
