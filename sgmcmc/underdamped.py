"""``underdamped``: underdamped Langevin dynamics integrated by BAOAB (Leimkuhler & Matthews).

    dtheta = v dt,  dv = -grad U dt - gamma v dt + sqrt(2 gamma T) dW      (unit mass)

in the units of ``sghmc``: u = v dt is the velocity per step, eta = dt^2 = h / N, and
friction = gamma dt, so the O-step factor is c = exp(-friction). One step is

    B: u <- u - (h / 2) g          A: theta <- theta + u / 2
    O: u <- c u + sqrt((1 - c^2) h T / N) xi
    A: theta <- theta + u / 2      B: u <- u - (h / 2) g(theta_new)

with one gradient per step: the closing B of step n and the opening B of step n + 1 use the same
gradient, so ``step()`` applies them together (the first step applies only the opening half).
The half kick left pending uses the step size of the step that opened it, so an lr schedule keeps
the splitting exact.
"""

import math

import torch

from .base import Hyper, Sampler
from .registry import register


@register("underdamped")
class UnderdampedLangevin(Sampler):
    """BAOAB underdamped Langevin with an exact Ornstein-Uhlenbeck O-step, one gradient per step."""

    hypers = {
        # bounded below by 1e-6, not 0: the fused O-step weighs the noise by 1 - exp(-friction), which
        # underflows in float16 below ~6e-8 (NaN) and in float32 below ~1e-45 (the chain stops moving)
        "friction": Hyper(0.1, low=1e-6, doc="gamma dt; O-step velocity factor exp(-friction); >= 1e-6 "
                                               "so that 1 - exp(-friction) holds in float16"),
    }

    @staticmethod
    def _scale(group) -> float:
        """sqrt((1 - c^2) h T / N) / (1 - c): the scale of y = s xi / (1 - c) below."""
        friction = group["friction"]
        return math.sqrt(-math.expm1(-2.0 * friction) * group["lr"] * group["temperature"] / group["num_data"]) / (
            -math.expm1(-friction)
        )

    def _update(self, group, params, grads):
        lr = group["lr"]
        velocity = self._state_list(params, "velocity", torch.zeros_like)
        # pending half kick from each parameter's previous step: lr_prev / 2 (0 on its first step)
        pending = [self.state[p].get("pending_half_kick", 0.0) for p in params]
        if all(k == pending[0] for k in pending):
            torch._foreach_add_(velocity, grads, alpha=-(pending[0] + 0.5 * lr))  # B (closing) + B (opening)
        else:  # some parameters skipped a step (grad None) and carry another pending kick
            for k in sorted(set(pending)):
                idx = [i for i, q in enumerate(pending) if q == k]
                torch._foreach_add_([velocity[i] for i in idx], [grads[i] for i in idx], alpha=-(k + 0.5 * lr))
        c = math.exp(-group["friction"])
        # A O A fused: with u the velocity after the kicks and y = s xi / (1 - c),
        #   O: u' = c u + s xi = lerp(u, y, 1 - c);  A + A: theta += u / 2 + u' / 2
        #                                                   = (1 + c) / 2 u + (1 - c) / 2 y
        torch._foreach_add_(params, velocity, alpha=0.5 * (1.0 + c))
        for p in params:
            self.state[p]["pending_half_kick"] = 0.5 * lr
        std = self._scale(group)
        if std == 0.0:
            torch._foreach_mul_(velocity, c)  # A + O + A without noise
        else:
            y = self._noise(params, std)
            one_minus_c = -math.expm1(-group["friction"])
            torch._foreach_lerp_(velocity, y, one_minus_c)  # O
            torch._foreach_add_(params, y, alpha=0.5 * one_minus_c)  # the rest of A + A
