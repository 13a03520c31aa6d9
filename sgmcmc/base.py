"""The Sampler base class: a ``torch.optim.Optimizer`` that targets exp(-U / T).

Convention (DESIGN.md, "The sampler contract"): U(theta) = -log p(theta) - sum_i log p(x_i | theta)
is the negative log posterior over N data and L = U / N. A training loop computes the minibatch
estimate ``L_hat = mean_batch(-log p(x | theta)) + (-log p(theta)) / N`` and calls ``backward()``;
every sampler reads ``p.grad = grad L_hat``. ``lr`` (h) is a step on L, so it means the same thing
for every sampler (SGLD at T = 0 is exactly SGD); ``num_data`` (N) and ``temperature`` (T) set the
noise scale.

Subclasses implement :meth:`_update`, which receives one bucket of parameters (all on one device,
of one dtype) with their gradients and performs the update with ``torch._foreach_*`` ops over the
whole list. Gaussian noise comes from :meth:`_noise`, one flat buffer per bucket filled in place by
``normal_`` (from the global generator, or the ``generator=`` given at construction).

A step has two phases so that a NaN or Inf gradient is caught before anything changes: every
bucket is first prepared (:meth:`_prepare`: optional work that reads the gradients but changes
neither the parameters nor the sampler state) and checked, and only then updated. A sampler whose
preparation already writes a flat buffer that depends on every gradient element returns a cheap
reduction of it as the finiteness witness, which saves the base class its own pass over the
gradients.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

__all__ = ["Sampler", "Hyper", "NonFiniteGradientError", "HyperparameterError"]


class HyperparameterError(ValueError):
    """A hyperparameter is missing, unknown or outside its valid range."""


class NonFiniteGradientError(FloatingPointError):
    """A gradient holds NaN or Inf: the chain has diverged.

    Raised by ``step()`` *before* any parameter is changed, so the parameters still hold the
    last finite state. ``step`` is the sampler's step count at the failure (0-based: the number
    of completed updates) and ``param_index`` the position of the offending tensor in its group.
    """

    def __init__(self, message: str, *, step: int, group_index: int, param_index: int):
        super().__init__(message)
        self.step = step
        self.group_index = group_index
        self.param_index = param_index


@dataclass(frozen=True)
class Hyper:
    """The valid range of one hyperparameter: ``low``/``high`` bounds, open or closed."""

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    doc: str = ""

    def describe(self) -> str:
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        left = "(" if (self.low_open or self.low is None) else "["
        right = ")" if (self.high_open or self.high is None) else "]"
        kind = "an integer in " if self.integer else ""
        return f"{kind}{left}{lo}, {hi}{right}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise HyperparameterError(f"{owner}: {name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HyperparameterError(
                f"{owner}: {name}={value!r} is not a number; valid: {self.describe()}"
            )
        # NaN, and an infinity on an unbounded side (the range is open there), are out of range
        bad = math.isnan(value) or math.isinf(value)
        if not bad and self.low is not None:
            bad = value <= self.low if self.low_open else value < self.low
        if not bad and self.high is not None:
            bad = value >= self.high if self.high_open else value > self.high
        if bad:
            raise HyperparameterError(f"{owner}: {name}={value!r} is out of range; valid: {self.describe()}")
        if self.integer:
            if int(value) != value:
                raise HyperparameterError(f"{owner}: {name}={value!r} must be {self.describe()}")
            return int(value)
        return float(value) if not isinstance(value, (int, float)) else value


#: Hyperparameters shared by every sampler.
COMMON_HYPERS: dict[str, Hyper] = {
    "lr": Hyper(None, low=0.0, low_open=True, doc="step size h on L = U / N"),
    "num_data": Hyper(None, low=1, integer=True, doc="N, the number of data the potential sums over"),
    "temperature": Hyper(1.0, low=0.0, doc="T: the sampler targets exp(-U / T)"),
}


class Sampler(torch.optim.Optimizer):
    """Base class of every SG-MCMC sampler; see the module docstring for the contract.

    Parameters
    ----------
    params: iterable of tensors or of param-group dicts, as for any ``torch.optim.Optimizer``.
    lr: step size h > 0 on the average potential L = U / N.
    num_data: N >= 1, the size of the data set the potential sums over.
    temperature: T >= 0; the target is exp(-U / T) (T = 1 the posterior, T < 1 a cold one).
    generator: optional ``torch.Generator`` for the noise; the global generator otherwise.
    check_finite: if True (default) a NaN or Inf gradient raises :class:`NonFiniteGradientError`
        before the parameters change.
    **hyper: the sampler's own hyperparameters (see ``cls.hypers``).
    """

    #: registry name, set by :func:`sgmcmc.register`
    name: str = ""
    #: the sampler's own hyperparameters and their valid ranges (subclasses extend)
    hypers: dict[str, Hyper] = {}
    #: False for samplers that add no noise (sgd): temperature plays no role
    uses_noise: bool = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        *,
        num_data: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        check_finite: bool = True,
        **hyper: Any,
    ):
        owner = type(self).__name__
        unknown = sorted(set(hyper) - set(self.hypers))
        if unknown:
            valid = sorted(set(COMMON_HYPERS) | set(self.hypers))
            given = ", ".join(f"{k}={hyper[k]!r}" for k in unknown)
            raise HyperparameterError(
                f"{owner}: unknown hyperparameter(s) {given}; valid: {', '.join(valid)}"
            )
        defaults = {"lr": lr, "num_data": num_data, "temperature": temperature}
        for key, spec in self.hypers.items():
            defaults[key] = hyper.get(key, spec.default)
        self._validate(defaults)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{owner}: generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.check_finite = bool(check_finite)
        self._noise_buffers: dict[tuple, torch.Tensor] = {}
        self._noise_views: dict[tuple, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self._staged: set[int] = set()
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ validation
    @classmethod
    def all_hypers(cls) -> dict[str, Hyper]:
        return {**COMMON_HYPERS, **cls.hypers}

    def _validate(self, group: dict) -> None:
        owner = type(self).__name__
        for key, spec in self.all_hypers().items():
            if key not in group or group[key] is None:
                raise HyperparameterError(f"{owner}: {key} is required; valid: {spec.describe()}")
            group[key] = spec.check(owner, key, group[key])

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._validate(self.param_groups[-1])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["step_count"] = self._steps_done
        if self.generator is not None:
            sd["generator_state"] = self.generator.get_state()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        gen_state = state_dict.pop("generator_state", None)
        self._step_counter = int(state_dict.pop("step_count", 0))
        self._staged.clear()
        super().load_state_dict(state_dict)
        if gen_state is not None and self.generator is not None:
            self.generator.set_state(gen_state)
        for group in self.param_groups:
            self._validate(group)

    # ------------------------------------------------------------------ noise
    def _noise(self, params: list[torch.Tensor], std: float = 1.0) -> list[torch.Tensor]:
        """N(0, std^2) draws shaped like ``params``: views of one flat buffer filled in place.

        One ``normal_`` call fills the bucket's buffer (the scale ``std`` costs nothing extra: it is
        applied inside the Box-Muller transform), so the noise is a single pass over memory. Each
        bucket has its own buffer (so noise drawn in :meth:`_prepare` survives until
        :meth:`_update`), and the views are cached, so a step allocates nothing.
        """
        out = self._noise_like(params)
        self._noise_flat(params).normal_(0.0, std, generator=self.generator)
        return out

    def _noise_flat(self, params: list[torch.Tensor]) -> torch.Tensor:
        """The flat buffer behind :meth:`_noise` for this bucket (its current contents)."""
        return self._noise_entry(params)[0]

    def _noise_like(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        return self._noise_entry(params)[1]

    def _noise_entry(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        first = params[0]
        key = (id(first), first.device, first.dtype, tuple(p.shape for p in params))
        entry = self._noise_views.get(key)
        if entry is None:
            numels = [p.numel() for p in params]
            bkey = (id(first), first.device, first.dtype)  # buckets are disjoint: the first parameter names one
            buf = self._noise_buffers.get(bkey)
            if buf is None or buf.numel() != sum(numels):
                buf = torch.empty(sum(numels), device=first.device, dtype=first.dtype)
                self._noise_buffers[bkey] = buf
                self._noise_views = {k: v for k, v in self._noise_views.items() if k[:3] != bkey}
            views = [buf.view(first.shape)] if len(params) == 1 else [
                chunk.view(p.shape) for chunk, p in zip(torch.split(buf, numels), params)
            ]
            entry = self._noise_views[key] = (buf, views)
        return entry

    # ------------------------------------------------------------------ step
    def _check_finite(
        self, grads: list[torch.Tensor], group_index: int, offsets: list[int], witness: torch.Tensor | None = None
    ) -> None:
        """Raise :class:`NonFiniteGradientError` if any gradient holds a NaN or an Inf.

        The fast path is one cheap reduction and one device sync: the sampler's ``witness`` from
        :meth:`_prepare` when it gave one, else the gradients' 2-norms, summed (finite exactly when
        every element is finite, unless it overflows). Only when that is not finite is each
        gradient checked element-wise, so a huge but finite gradient whose reduction overflows is
        not mistaken for a diverged chain.
        """
        if witness is not None:
            total = witness
        elif len(grads) > 1:
            total = torch.stack(torch._foreach_norm(grads)).sum()
        else:
            total = torch.linalg.vector_norm(grads[0])
        if math.isfinite(total.item()):
            return
        bad = next((i for i, g in enumerate(grads) if not bool(torch.isfinite(g).all())), None)
        if bad is None:  # the norm overflowed; every element is finite
            return
        raise NonFiniteGradientError(
            f"{type(self).__name__}: non-finite gradient (NaN or Inf) in parameter {offsets[bad]} of "
            f"param group {group_index} at step {self._steps_done}; the chain has diverged "
            f"(try a smaller lr; parameters were left at their last finite values)",
            step=self._steps_done,
            group_index=group_index,
            param_index=offsets[bad],
        )

    @property
    def _steps_done(self) -> int:
        return getattr(self, "_step_counter", 0)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One update of every parameter that has a gradient (``grad is None`` is skipped)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for gi, group in enumerate(self.param_groups):
            buckets: dict[tuple, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                b = buckets[(p.device, p.dtype)]
                b[0].append(p)
                b[1].append(p.grad)
                b[2].append(pi)
            for params, grads, offsets in buckets.values():
                witness = self._prepare(group, params, grads)
                if self.check_finite:
                    self._check_finite(grads, gi, offsets, witness)
                work.append((group, params, grads))
        # every gradient was checked before any parameter or state changes
        for group, params, grads in work:
            self._update(group, params, grads)
        self._step_counter = self._steps_done + 1
        return loss

    def _prepare(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor | None:
        """Optional first phase of a bucket's update, run for every bucket before any :meth:`_update`.

        It may read the gradients and fill the sampler's own scratch buffers (e.g. draw the noise
        and add the gradient term to it) but must change neither the parameters nor ``self.state``.
        It returns a 0-dim tensor that is finite whenever every gradient is (a sum over a buffer
        into which every gradient element entered), or None to let the base class reduce the
        gradients itself. The default does nothing.
        """
        return None

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _mark_staged(self, params: list[torch.Tensor]) -> None:
        """Record that :meth:`_prepare` staged work for this bucket (named by its first parameter)."""
        self._staged.add(id(params[0]))

    def _take_staged(self, params: list[torch.Tensor]) -> bool:
        """True (once) if :meth:`_prepare` staged work for this bucket; else ``_update`` stages it itself."""
        key = id(params[0])
        if key in self._staged:
            self._staged.discard(key)
            return True
        return False

    # helpers for subclasses
    def _state_list(self, params: list[torch.Tensor], key: str, init: Callable[[torch.Tensor], Any]) -> list:
        out = []
        for p in params:
            st = self.state[p]
            if key not in st:
                st[key] = init(p)
            out.append(st[key])
        return out

    @staticmethod
    def noise_scale(group: dict) -> float:
        """sqrt(2 h T / N): the SGLD noise standard deviation per step."""
        return math.sqrt(2.0 * group["lr"] * group["temperature"] / group["num_data"])

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={self.defaults[k]!r}" for k in self.all_hypers())
        return f"{type(self).__name__}({hyper})"
