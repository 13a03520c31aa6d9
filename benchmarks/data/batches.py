"""Minibatches by indexing tensors already on the run's device, and the uint8 -> float conversion."""

from __future__ import annotations

import math

import torch


def to_float(images: torch.Tensor, device: torch.device | str | None = None, *, flatten: bool = True) -> torch.Tensor:
    """uint8 images [N, 28, 28] -> float32 in [0, 1] on ``device``: [N, 784] if ``flatten`` else [N, 1, 28, 28].

    The uint8 tensor is moved first (a quarter of the bytes), then converted on the device.
    """
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(f"images must be a uint8 tensor [N, H, W], got {images.dtype} {list(images.shape)}")
    images = images.to(device).float().div_(255)
    return images.flatten(1) if flatten else images.unsqueeze(1)


class Batches:
    """Shuffled minibatches of (x, y): one ``torch.randperm`` per epoch, then ``index_select`` per batch.

    ``x`` and ``y`` (same length, same device) stay where they are; each batch is gathered on their
    device, with no per-item Python and no worker processes (in order: slices, no copy). ``generator`` (a seeded
    ``torch.Generator``, CPU or on the tensors' device) makes the order reproducible; without one the
    global generator is used. ``drop_last`` drops the final short batch; ``shuffle=False`` yields the
    data in order (for evaluation).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, generator: torch.Generator | None = None,
                 drop_last: bool = True, shuffle: bool = True):
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if x.device != y.device:
            raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
        if not isinstance(batch_size, int) or batch_size < 1 or (drop_last and batch_size > len(x)):
            raise ValueError(f"batch_size must be an integer >= 1, and with drop_last at most the number of items "
                             f"({len(x)}); got {batch_size!r}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator, self.drop_last, self.shuffle = generator, drop_last, shuffle

    def __len__(self) -> int:
        return len(self.x) // self.batch_size if self.drop_last else math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        stop = len(self) * self.batch_size if self.drop_last else len(self.x)
        if not self.shuffle:
            for start in range(0, stop, self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            return
        device = self.generator.device if self.generator is not None else self.x.device
        order = torch.randperm(len(self.x), generator=self.generator, device=device).to(self.x.device)
        for index in order[:stop].split(self.batch_size):
            yield self.x.index_select(0, index), self.y.index_select(0, index)
