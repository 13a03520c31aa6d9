"""``sgld`` (Welling & Teh 2011): theta += -h g + sqrt(2 h T / N) xi."""

import torch

from .base import Sampler
from .registry import register


@register("sgld")
class SGLD(Sampler):
    """Stochastic gradient Langevin dynamics, targeting exp(-U / T). At T = 0 it is SGD."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        scale = self.noise_scale(group)
        if scale > 0.0:  # the noise is drawn at its scale: sqrt(2 h T / N) xi
            torch._foreach_add_(params, self._noise(params, std=scale))
