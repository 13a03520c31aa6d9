"""The records every part of the data layer shares: errors, provenance, datasets, the array digest."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

NUM_CLASSES = 10


class DataError(Exception):
    """Base class of every error the data layer raises."""


class DataUnavailableError(DataError):
    """Every source of a dataset failed; the message lists each source, why, and the fix."""


class CorruptFileError(DataError):
    """A file is present but cannot be decoded (truncated, wrong format, wrong shape)."""


class ChecksumError(CorruptFileError):
    """Decoded arrays or a file do not match their known sha256."""


class UnsafeFileError(DataError):
    """A file asks for something unsafe: a pickle naming a non-numpy object, a tar member escaping its folder."""


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a dataset split came from, for the run records.

    ``source`` is the source that served (``"cache"``, ``"data-dir"``, ``"torchvision-download"``, ...),
    ``location`` the path or URL it read; for ``"cache"``, ``origin`` names the source that filled the
    cache. ``sha256`` is :func:`array_sha256` of the decoded arrays. ``num_skipped`` counts source
    files that could not be decoded and were left out (notMNIST's empty PNGs).
    """

    dataset: str
    split: str
    source: str
    location: str
    sha256: str
    num_images: int
    num_skipped: int = 0
    origin: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One split: ``images`` uint8 [N, 28, 28], ``labels`` int64 [N] in 0..9, and its provenance."""

    images: torch.Tensor
    labels: torch.Tensor
    provenance: Provenance

    def __len__(self) -> int:
        return len(self.labels)


def array_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the C-order bytes of ``images`` (uint8 [N, 28, 28]) followed by ``labels`` as uint8 [N].

    The digest depends only on the decoded arrays, so every source of the same split agrees on it.
    """
    digest = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).data)
    digest.update(np.ascontiguousarray(labels, dtype=np.uint8).data)
    return digest.hexdigest()


def check_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images, labels) as uint8 arrays after checking shapes, dtype and label range.

    Raises CorruptFileError naming ``where`` (the file) and what is wrong.
    """
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptFileError(f"{where}: images must be uint8 [N, 28, 28], got {images.dtype} {list(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise CorruptFileError(f"{where}: labels must be [{len(images)}], got {list(labels.shape)}")
    if not np.issubdtype(labels.dtype, np.integer) or ((labels < 0) | (labels >= NUM_CLASSES)).any():
        raise CorruptFileError(f"{where}: labels must be integers in 0..{NUM_CLASSES - 1}")
    return np.ascontiguousarray(images), labels.astype(np.uint8)
