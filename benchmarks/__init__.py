"""sgmcmc-bench: the benchmark suite (``python -m benchmarks``); the samplers are the ``sgmcmc`` package."""

import os as _os
import sys as _sys

# torch's OpenMP threads spin-wait (~ms, libgomp's default) after every parallel region, holding the
# cores that a sampler's parallel noise draw (sgmcmc: blocks from noise streams, drawn on a helper
# thread) needs: on 2 cores the draw then costs what a one-thread draw does. A short spin-wait lets
# it use them. libgomp reads this once, when torch loads it, so it is set only if torch is not
# imported yet, and never over the user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT. Timing only: no
# result depends on it (records keep it in their provenance).
if "torch" not in _sys.modules and not ({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(_os.environ)):
    _os.environ["GOMP_SPINCOUNT"] = "10000"
