"""One MNIST-sized epoch of minibatches (50,000 x 784 float32, batch 100): Batches vs DataLoader(TensorDataset).

Run: python -m pytest perf/bench_batches.py --benchmark-only
The data is random (the shape is what matters), on the CPU, as in the hand-measured figures that
Batches must match: 0.033 s an epoch by hand, 0.21 s with DataLoader(TensorDataset).
On a machine busy with other jobs, also run it with OMP_NUM_THREADS=1: each 100-row gather is split
across torch's threads, and an oversubscribed CPU makes every one of them wait for a descheduled peer.
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.data import Batches

NUM_DATA, DIM, BATCH_SIZE = 50_000, 784, 100


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(NUM_DATA, DIM, generator=generator), torch.randint(0, 10, (NUM_DATA,), generator=generator)


def _epoch(loader) -> int:
    count = 0
    for xb, _ in loader:
        count += len(xb)
    return count


def test_epoch_batches(benchmark, data):
    batches = Batches(*data, BATCH_SIZE, generator=torch.Generator().manual_seed(0))
    assert benchmark(_epoch, batches) == NUM_DATA


def test_epoch_dataloader(benchmark, data):
    loader = DataLoader(TensorDataset(*data), batch_size=BATCH_SIZE, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    assert benchmark(_epoch, loader) == NUM_DATA
