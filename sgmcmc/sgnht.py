"""``sgnht``: the stochastic gradient Nose-Hoover thermostat (Ding et al. 2014), in ``sghmc``'s units.

The dynamics (unit mass, temperature T; one thermostat xi_i per coordinate)

    dtheta = p dt,   dp = -grad U dt - xi p dt + sqrt(2 A T) dW,   dxi_i = (p_i^2 - T) dt

leave exp(-U / T - |p|^2 / (2 T)) times N(xi_i; A, T) invariant: the friction xi p is split into
an Ornstein-Uhlenbeck part A p, which the noise balances, and (xi - A) p, which together with the
xi equation conserves that density. Noise in the gradient heats the chain; xi rises above A until
it has taken that heat out: the thermostat holds the kinetic energy per coordinate at T.

Ding et al. take Euler steps of length eps:

    p  <- p - xi p eps - grad U eps + sqrt(2 A T eps) N(0, 1)
    theta <- theta + p eps
    xi <- xi + (p^2 - T) eps

In the units of ``sghmc``, v = eps p is the velocity per step, eps^2 = h / N (so grad U eps^2 =
N g h / N = h g with g = grad L), and the friction is per step: the thermostat xi eps and the
injected diffusion A eps (still written xi and A below). Multiplying the p and xi equations by eps:

    v  <- (1 - xi) v - h g + sqrt(2 A h T / N) eta
    theta <- theta + v
    xi <- xi + v^2 - h T / N

and xi's stationary law N(A, T) becomes N(A, h T / N) per step: E[v^2] = h T / N is the kinetic
energy per coordinate, in these units.

The kinetic energy the thermostat reads
---------------------------------------
``sgnht`` reads the kinetic energy from the velocity at theta's own time, the average of the
velocities before and after the step, u = (v_old + v_new) / 2 (theta moves by the half-step
velocities of a leapfrog, and u is the integer-time one):

    xi <- xi + u^2 - h T / N

With the new velocity's square, as in Ding et al.'s algorithm, the thermostat settles where the
per-step Euler velocity has E[v^2] = h T / N, which is not at xi = A: at fixed xi the Euler
velocity's E[v^2] is 2 A / (2 xi - xi^2) h T / N, so xi settles at 1 - sqrt(1 - 2 A) (0.106 for
A = 0.1), the chain runs at about the temperature (A / xi) T (0.95 T at A = 0.1, 0.82 T at A = 0.3;
measured on the conformance Gaussian, marginal variances 6 % and 20 % low), and for A >= 1/2 no xi
reaches the target (xi grows without bound). With u^2, the thermostat's fixed point on a Gaussian
target is xi = A exactly, at every step size and stiffness (the discrete Lyapunov equation of the
linear chain), so with exact gradients ``sgnht`` is ``sghmc`` with friction A; with gradient noise
of variance s^2 per coordinate of g, xi settles at A + h N s^2 / (2 T), which takes the noise out.
Both readings are the same continuous-time dynamics.

Guards and limits
-----------------
- **1 - xi is clamped at 0.** The velocity keeps the fraction 1 - min(xi, 1): a per-step friction
  removes at most all of the velocity. Without the clamp, xi > 2 (a hot start, a large first
  gradient) would multiply v by less than -1 each step and the chain would diverge. With it, a
  thermostat above 1 gives the step v = -h g + sqrt(2 A h T / N) eta, an SGLD step at the
  temperature A T, until xi has come down. xi falls by at most h T / N a step, so after a long hot
  transient it can stay above A for about (xi - A) N / (h T) steps: burn in long enough.
- **xi below 0** multiplies v by more than 1: the thermostat heats a chain that is colder than T,
  as any Nose-Hoover thermostat does. Its stationary spread is about sqrt(h T / N) around A, and a
  chain it heats too much raises xi again, so it is not clamped.
- **T = 0.** The noise is scaled by T, so no noise is drawn and the trajectory does not depend on
  the seed; the target h T / N is 0, so xi only grows, by u^2 a step. The sampler is then a
  heavy-ball optimiser whose friction rises with the kinetic energy, and plain SGD once xi >= 1.
- xi starts at A (each parameter's, at its first step) and is kept per scalar coordinate in
  ``self.state[p]["xi"]`` beside the velocity ``self.state[p]["velocity"]`` (starting at 0), in the
  parameter's dtype. Chains held as rows of one tensor each have their own thermostats. In
  float16 and bfloat16, increments of xi below its precision (about 1e-3 of xi) are lost: use
  float32 parameters.
"""

import math

import torch

from .base import Hyper, Sampler
from .registry import register


@register("sgnht")
class SGNHT(Sampler):
    """Stochastic gradient Nose-Hoover thermostat: sghmc whose friction xi adapts per coordinate."""

    hypers = {
        "A": Hyper(0.1, low=0.0, high=1.0, low_open=True,
                   doc="injected diffusion, as a per-step friction (sghmc's friction); the thermostat starts there"),
    }

    def _update(self, group, params, grads):
        lr, A = group["lr"], group["A"]
        target = lr * group["temperature"] / group["num_data"]  # h T / N: the kinetic energy per coordinate
        velocity = self._state_list(params, "velocity", torch.zeros_like)
        xi = self._state_list(params, "xi", lambda p: torch.full_like(p, A))
        keep = torch._foreach_clamp_max(xi, 1.0)
        torch._foreach_neg_(keep)
        torch._foreach_add_(keep, 1.0)  # 1 - min(xi, 1)
        mid = torch._foreach_mul(velocity, 0.5)  # v_old / 2
        torch._foreach_mul_(velocity, keep)
        torch._foreach_add_(velocity, grads, alpha=-lr)  # (1 - xi) v - h g
        std = math.sqrt(2.0 * A * target)
        if std > 0.0:
            torch._foreach_add_(velocity, self._noise(params, std))  # + sqrt(2 A h T / N) eta
        torch._foreach_add_(params, velocity)
        torch._foreach_add_(mid, velocity, alpha=0.5)  # u = (v_old + v_new) / 2
        torch._foreach_addcmul_(xi, mid, mid)
        torch._foreach_add_(xi, -target)  # xi + u^2 - h T / N
