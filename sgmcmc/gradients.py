"""Control variates: a lower-variance minibatch gradient that any sampler can read.

Baker, Fearnhead, Fox and Nemeth (2019), "Control variates for stochastic gradient MCMC". With
``g_B`` the minibatch gradient of L = U / N on the step's minibatch B (this library's convention,
see docs/contract.md: the mean loss plus the prior over N), a fixed centre ``theta_hat`` near the
mode and ``g_full(theta_hat)`` the full-data gradient there, computed once,

    grad_hat(theta) = g_B(theta) - g_B(theta_hat) + g_full(theta_hat).

It is unbiased for grad L(theta) for any centre, and its noise, (g_B - g)(theta) - (g_B - g)(theta_hat),
shrinks with |theta - theta_hat|: near the mode it is a small fraction of the plain minibatch
gradient's. Each step costs two minibatch gradients (at theta and at theta_hat, on the same
minibatch), and the centre costs the full gradient once (N / batch_size minibatch gradients) plus
whatever found the mode.

Two ways to use it:

- :class:`ControlVariates` for a training loop with autograd: give it the parameters and the
  function that computes the minibatch loss; :meth:`ControlVariates.backward` writes the estimate
  into ``p.grad``, where every ``sgmcmc`` sampler (or any ``torch.optim`` optimiser) reads it.
- :func:`control_variate` and :func:`full_gradient` for analytic or batched gradients (a function
  ``grad_fn(theta, batch)``), e.g. many chains as the rows of one tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["ControlVariates", "CentreNotSetError", "control_variate", "full_gradient", "batch_length"]


class CentreNotSetError(RuntimeError):
    """:meth:`ControlVariates.backward` was called before :meth:`ControlVariates.set_centre`."""


def batch_length(batch: Any) -> int:
    """The number of data in ``batch``: its first dimension, or that of its first element (a tuple
    or list such as ``(x, y)``), or of its first value (a dict)."""
    item = batch
    if isinstance(item, dict):
        item = next(iter(item.values()))
    elif isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, torch.Tensor) and item.dim() > 0:
        return int(item.shape[0])
    try:
        return len(item)
    except TypeError:
        raise TypeError(f"cannot tell the size of a batch of type {type(batch).__name__}; pass size=<function "
                        f"batch -> number of data> to ControlVariates") from None


def _check_finite(name: str, tensors: Iterable[torch.Tensor]) -> None:
    for i, g in enumerate(tensors):
        if not bool(torch.isfinite(g).all()):
            raise FloatingPointError(f"the full-data gradient at the centre of {name} {i} is not finite (NaN or Inf); "
                                     f"choose a centre where the loss is finite")


class ControlVariates:
    """Control-variate gradients for a list of parameters and a minibatch loss.

    Parameters
    ----------
    params:
        the parameters the sampler moves: tensors with ``requires_grad`` (``model.parameters()``), or
        ``torch.optim`` param-group dicts (their ``"params"`` are used).
    loss_fn:
        ``loss_fn(batch)`` returns the scalar minibatch estimate L_hat of L = U / N at the parameters'
        current values: the mean loss over the batch plus (-log prior) / N, as a training loop
        already writes it. It is called twice per :meth:`backward`, on the same batch, and with the
        same random-number state (so a dropout mask or a sampled augmentation is the same in both).
    batch_size:
        the nominal minibatch size of the sampling steps: the unit of :attr:`grad_evals`. Default:
        the size of the largest batch given to :meth:`set_centre`.
    size:
        ``size(batch)`` -> the number of data in a batch (default :func:`batch_length`: the first
        dimension of the batch, or of its first element).

    Attributes
    ----------
    grad_evals: float
        the cost so far, in minibatch gradients: the full gradient of each :meth:`set_centre` counts
        (its data) / ``batch_size`` (N / batch_size), each :meth:`backward` counts 2.
    centre: list[torch.Tensor] | None
        theta_hat (copies, one per parameter), None before :meth:`set_centre`.
    centre_grad: list[torch.Tensor] | None
        g_full(theta_hat), one tensor per parameter.
    num_data: int | None
        the number of data the full gradient summed over.
    """

    def __init__(self, params: Iterable[Any], loss_fn: Callable[[Any], torch.Tensor], *,
                 batch_size: int | None = None, size: Callable[[Any], int] = batch_length) -> None:
        flat: list[torch.Tensor] = []
        for p in params:
            if isinstance(p, dict):
                flat.extend(p["params"])
            else:
                flat.append(p)
        if not flat:
            raise ValueError("ControlVariates got no parameters")
        for i, p in enumerate(flat):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"parameter {i} is not a tensor")
        # frozen parameters (requires_grad False) are left alone, as torch.optim leaves them
        flat = [p for p in flat if p.requires_grad]
        if not flat:
            raise ValueError("ControlVariates got no parameter that requires grad")
        if len({id(p) for p in flat}) != len(flat):
            raise ValueError("a parameter appears more than once")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size={batch_size!r}; valid: an integer >= 1")
        self.params, self.loss_fn, self.batch_size, self.size = flat, loss_fn, batch_size, size
        self.centre: list[torch.Tensor] | None = None
        self.centre_grad: list[torch.Tensor] | None = None
        self.num_data: int | None = None
        self.grad_evals: float = 0.0
        self._used: list[bool] = [True] * len(flat)

    # ------------------------------------------------------------------ the centre
    def set_centre(self, batches: Iterable[Any]) -> torch.Tensor:
        """Store theta_hat = the parameters' current values and compute g_full(theta_hat) over
        ``batches``, an iterable of batches that covers the data set once (e.g. one epoch of a
        DataLoader, shuffled or not). Each batch's gradient is weighted by its share of the data,
        so batches of unequal size give the exact mean. Returns the full-data loss L(theta_hat).

        Adds (number of data) / ``batch_size`` to :attr:`grad_evals`. Raises ``ValueError`` for
        no data, ``FloatingPointError`` for a non-finite full gradient (the previous centre, if any,
        is kept)."""
        sums = [torch.zeros_like(p, dtype=torch.float64 if p.dtype in (torch.float16, torch.bfloat16, torch.float32)
                                 else p.dtype) for p in self.params]
        loss_sum, n, largest = 0.0, 0, 0
        used = [False] * len(self.params)
        with torch.enable_grad():
            for batch in batches:
                m = int(self.size(batch))
                if m < 1:
                    continue
                loss = self.loss_fn(batch)
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
                for i, (s, g) in enumerate(zip(sums, grads)):
                    if g is not None:
                        s.add_(g.detach().to(s.dtype), alpha=m)
                        used[i] = True
                loss_sum += float(loss.detach()) * m
                n += m
                largest = max(largest, m)
        if n == 0:
            raise ValueError("set_centre got no data: pass an iterable of batches covering the data set")
        if not any(used):
            raise ValueError("the loss depends on none of the parameters given to ControlVariates")
        #: parameters the loss reached at the centre; one it never reaches keeps ``grad = None``
        self._used = used
        full = [(s / n).to(p.dtype) for s, p in zip(sums, self.params)]
        _check_finite("parameter", full)
        if self.batch_size is None:
            self.batch_size = largest
        self.centre = [p.detach().clone() for p in self.params]
        self.centre_grad = full
        self.num_data = n
        self.grad_evals += n / self.batch_size
        return torch.tensor(loss_sum / n)

    def _centre_for(self, i: int, p: torch.Tensor) -> torch.Tensor:
        c = self.centre[i]
        if c.shape != p.shape:
            raise ValueError(f"parameter {i} has shape {tuple(p.shape)} but {tuple(c.shape)} when the centre was set; "
                             f"call set_centre again after changing the parameters' shapes")
        if c.dtype != p.dtype or c.device != p.device:  # moved mid-run (model.double(), .cuda()): follow it
            self.centre[i] = c = c.to(device=p.device, dtype=p.dtype)
            self.centre_grad[i] = self.centre_grad[i].to(device=p.device, dtype=p.dtype)
        return c

    # ------------------------------------------------------------------ one step
    def backward(self, batch: Any) -> torch.Tensor:
        """Write grad_hat(theta) = g_B(theta) - g_B(theta_hat) + g_full(theta_hat) into ``p.grad``
        of every parameter (replacing what was there) and return the minibatch loss L_hat(theta),
        detached. Both minibatch gradients use ``batch`` and the same random-number state.

        Adds 2 to :attr:`grad_evals`. Raises :class:`CentreNotSetError` before :meth:`set_centre`,
        and ``ValueError`` if a parameter's shape changed since."""
        if self.centre is None:
            raise CentreNotSetError("ControlVariates.backward needs a centre: call set_centre(batches) first "
                                    "(at parameters near the mode, e.g. after a few epochs of SGD)")
        params = self.params
        centres = [self._centre_for(i, p) for i, p in enumerate(params)]
        devices = sorted({p.device.index for p in params if p.device.type == "cuda"})
        with torch.enable_grad():
            # the pass at theta runs on a fork of the RNG state; the pass at the centre then replays
            # the same state (and advances it once, as one plain backward would)
            with torch.random.fork_rng(devices=devices):
                loss = self.loss_fn(batch)
                g_theta = torch.autograd.grad(loss, params, allow_unused=True)
            saved = [p.data for p in params]
            try:
                for p, c in zip(params, centres):
                    p.data = c
                loss_c = self.loss_fn(batch)
                g_centre = torch.autograd.grad(loss_c, params, allow_unused=True)
            finally:
                for p, s in zip(params, saved):
                    p.data = s
        with torch.no_grad():
            for i, (p, gt, gc, gf) in enumerate(zip(params, g_theta, g_centre, self.centre_grad)):
                if gt is None and gc is None and not self._used[i]:
                    continue  # the loss never reaches it: no gradient, as after a plain backward()
                est = gf.clone()
                if gt is not None:
                    est.add_(gt)
                if gc is not None:
                    est.sub_(gc)
                if p.grad is None or p.grad.shape != p.shape:
                    p.grad = est
                else:
                    p.grad.copy_(est)
        self.grad_evals += 2
        return loss.detach()

    def state_dict(self) -> dict:
        """The centre, its full gradient, the data count and the cost so far (for a resumed run)."""
        return {"centre": self.centre, "centre_grad": self.centre_grad, "num_data": self.num_data,
                "batch_size": self.batch_size, "grad_evals": self.grad_evals}

    def load_state_dict(self, state: dict) -> None:
        if state["centre"] is not None and len(state["centre"]) != len(self.params):
            raise ValueError(f"the state holds a centre of {len(state['centre'])} parameters, not {len(self.params)}")
        if state["centre"] is not None:
            for i, (c, p) in enumerate(zip(state["centre"], self.params)):
                if c.shape != p.shape:
                    raise ValueError(f"the state's centre for parameter {i} has shape {tuple(c.shape)}, the "
                                     f"parameter {tuple(p.shape)}: a state of another model")
        self.centre = None if state["centre"] is None else [c.clone() for c in state["centre"]]
        self.centre_grad = None if state["centre_grad"] is None else [g.clone() for g in state["centre_grad"]]
        self.num_data, self.batch_size, self.grad_evals = state["num_data"], state["batch_size"], state["grad_evals"]


# ====================================================================== functional form
def control_variate(grad_fn: Callable[[torch.Tensor, Any], torch.Tensor], theta: torch.Tensor, batch: Any,
                    centre: torch.Tensor, centre_grad: torch.Tensor) -> torch.Tensor:
    """grad_fn(theta, batch) - grad_fn(centre, batch) + centre_grad: the control-variate estimate
    for an analytic minibatch gradient ``grad_fn(theta, batch)`` (of L = U / N). ``centre`` and
    ``centre_grad`` (= the full-data gradient at the centre, see :func:`full_gradient`) broadcast
    against ``theta``: one centre for many chains (rows of theta), or one per chain. The two terms
    use the same ``batch``; that is what makes the difference small."""
    if not bool(torch.isfinite(centre_grad).all()):
        raise FloatingPointError("centre_grad (the full-data gradient at the centre) is not finite")
    if centre.shape != theta.shape:
        centre = centre.expand_as(theta)
    return grad_fn(theta, batch) - grad_fn(centre, batch) + centre_grad


def full_gradient(grad_fn: Callable[[torch.Tensor, Any], torch.Tensor], theta: torch.Tensor, batches: Iterable[Any],
                  size: Callable[[Any], int] = batch_length) -> tuple[torch.Tensor, int]:
    """(g_full(theta), N): the mean of ``grad_fn(theta, batch)`` over ``batches`` (covering the data
    once), each weighted by its size, and the number of data. Raises ``FloatingPointError`` if the
    result is not finite and ``ValueError`` for no data."""
    total, n = None, 0
    for batch in batches:
        m = int(size(batch))
        g = grad_fn(theta, batch) * m
        total = g if total is None else total + g
        n += m
    if n == 0 or total is None:
        raise ValueError("full_gradient got no data")
    out = total / n
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError("the full-data gradient is not finite (NaN or Inf)")
    return out, n

