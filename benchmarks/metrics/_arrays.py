"""Input helpers shared by the metric modules: numpy float64 from numpy, torch or array-likes."""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _to_numpy(x: Any, dtype=np.float64) -> np.ndarray:
    """numpy array (float64 by default) from a numpy array, torch tensor, list or scalar."""
    if _is_torch(x):
        x = x.detach().cpu()
        if dtype is not None and x.dtype.is_floating_point:
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)
