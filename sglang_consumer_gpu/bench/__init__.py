"""``bench``: the plugin's kernel choices against SGLang's own, timed on the live GPU.

- :mod:`.points`: every family's points for a model (its ``bench_points``: fused MoE per batch
  size, extend attention per workload), the plugin's choice, SGLang's own, and whether SGLang's
  own fits the GPU (pure, compile-only);
- :mod:`.run`: both timed with the engine's one timer, the JSON rewritten after every point;
- :mod:`.report`: the table and the PNG plot;
- :mod:`.calibration`: the same timing turned on the emulation itself -- fused-MoE files tuned on
  real Ada cards, their picks against the best of the feasible space (``scripts/device/calibrate.py``).
"""
