"""``sgd``: theta -= h g. The optimisation baseline; temperature plays no role."""

import torch

from .base import Sampler
from .registry import register


@register("sgd")
class SGD(Sampler):
    """Plain stochastic gradient descent, theta <- theta - h * grad L_hat (no noise)."""

    uses_noise = False

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
