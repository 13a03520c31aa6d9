"""The networks of the MNIST tasks.

- ``mlp``: 784-400-400-10 with ReLU, the preconditioned-SGLD paper's (Li et al. 2016) network.
- ``cnn``: LeNet-style: conv 32 5x5, max-pool 2, conv 64 5x5, max-pool 2, fc 1024-200, fc 200-10.

Both take images as float32 in [0, 1], shaped [B, 784] (the MLP) or [B, 1, 28, 28] (the CNN); the
``input_shape`` attribute says which, so a task reshapes its in-memory tensor once.
"""

from __future__ import annotations

from torch import nn

__all__ = ["MLP", "LeNet", "build_model", "MODELS"]


class MLP(nn.Sequential):
    input_shape = (784,)

    def __init__(self, hidden: tuple[int, ...] = (400, 400), num_classes: int = 10):
        layers: list[nn.Module] = []
        width = 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class LeNet(nn.Sequential):
    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 12 x 12
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 4 x 4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 200), nn.ReLU(),
            nn.Linear(200, num_classes),
        )


MODELS = {"mlp": MLP, "cnn": LeNet}


def build_model(name: str) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name]()


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
