"""Input helpers shared by the metric modules: numpy float64 from numpy, torch or array-likes
(one definition, in :mod:`sgmcmc.diagnostics`)."""

from sgmcmc.diagnostics import _is_torch, _to_numpy  # noqa: F401
