"""The Sampler base class: a ``torch.optim.Optimizer`` that targets exp(-U / T).

Convention (docs/contract.md): U(theta) = -log p(theta) - sum_i log p(x_i | theta) is the negative
log posterior over N data and L = U / N. A training loop computes the minibatch estimate
``L_hat = mean_batch(-log p(x | theta)) + (-log p(theta)) / N`` and calls ``backward()``; every
sampler reads ``p.grad = grad L_hat``. ``lr`` (h) is a step on L, so it means the same thing for
every sampler (SGLD at T = 0 is exactly SGD); ``num_data`` (N) and ``temperature`` (T) set the
noise scale.

Subclasses implement :meth:`_update`, which receives one bucket of parameters (all on one device,
of one dtype) with their gradients and performs the update with ``torch._foreach_*`` ops over the
whole list. Gaussian noise comes from :meth:`_noise`, one flat buffer per bucket filled in place by
``normal_`` (from the global generator, or the ``generator=`` given at construction; on the CPU a
large buffer is drawn in blocks of 2^16 values from parallel noise streams, see :mod:`sgmcmc._noise`).
Per-parameter state (a velocity, a preconditioner) lives in ``self.state[p]``, so ``state_dict``,
``deepcopy`` and ``pickle`` carry it; :meth:`_state_list` creates it on a parameter's first step.

A step has two phases so that a NaN or Inf gradient is caught before anything changes: every
bucket is first prepared (:meth:`_prepare`: optional work that reads the gradients but changes
neither the parameters nor the sampler state) and checked, and only then updated. A sampler whose
preparation already writes a flat buffer that depends on every gradient element returns a cheap
reduction of it as the finiteness witness, which saves the base class its own pass over the
gradients.

Hyperparameter declarations and checks live in :mod:`sgmcmc._hyper`, the noise streams and block
draws in :mod:`sgmcmc._noise`, the cached grouping of parameters into buckets in
:mod:`sgmcmc._buckets`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from . import _hyper, _noise
from ._buckets import BucketCache
from ._hyper import COMMON_HYPERS, TORCH_GROUP_KEYS, Hyper, HyperparameterError  # noqa: F401 (re-exported)
from ._noise import NOISE_BLOCK_NUMEL  # noqa: F401 (re-exported)

__all__ = ["Sampler", "Hyper", "NonFiniteGradientError", "HyperparameterError", "Diverged"]


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


class Diverged(Exception):
    """A chain left the finite numbers (or, for a task, produced a dead model): raised by the code
    that runs the chain, never by ``step()`` itself. ``step`` is where it stopped, ``reason`` why."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


def _profiler_enabled() -> bool:
    return torch.autograd.profiler._is_profiler_enabled or torch._C._autograd._profiler_enabled()


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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # the split update went with overlap_noise: a sampler relying on it would silently lose its noise
        for method in ("_update_noise", "_noise_std"):
            if method in cls.__dict__:
                raise TypeError(f"{cls.__module__}.{cls.__qualname__} defines {method}, which sgmcmc no longer "
                                f"calls (the split update went with overlap_noise): draw the noise at the end of "
                                f"_update with self._noise(params, std)")

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
        _hyper.refuse_kwargs(owner, self.hypers, hyper)
        defaults = {"lr": lr, "num_data": num_data, "temperature": temperature}
        for key, spec in self.hypers.items():
            defaults[key] = hyper.get(key, spec.default)
        self._validate(defaults)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{owner}: generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.check_finite = bool(check_finite)
        self._init_transient()
        self._streams: list[torch.Generator] = []  # noise streams 1, 2, ... (stream 0 is ``generator``)
        super().__init__(params, defaults)

    def _init_transient(self) -> None:
        """Caches and scratch buffers: rebuilt on demand, never pickled or copied (subclasses that
        keep their own extend this)."""
        self._noise_buffers = _noise.NoiseBuffers()
        self._bucket_cache = BucketCache()
        self._staged: set[int] = set()
        self._rechecker = _hyper.Rechecker()

    def __getstate__(self) -> dict:
        """What ``pickle`` and ``copy.deepcopy`` keep: torch.optim's state plus the sampler's own
        settings, generator and step count (caches are rebuilt)."""
        state = super().__getstate__()
        state.update(generator=self.generator, check_finite=self.check_finite,
                     _step_counter=self._steps_done, _streams=list(self._streams))
        return state

    def __setstate__(self, state: dict) -> None:
        self._init_transient()
        state.setdefault("_streams", [])
        state.pop("overlap_noise", None)  # pickled before it was removed
        super().__setstate__(state)

    # ------------------------------------------------------------------ validation
    @classmethod
    def all_hypers(cls) -> dict[str, Hyper]:
        return {**COMMON_HYPERS, **cls.hypers}

    def _validate(self, group: dict) -> None:
        _hyper.validate(type(self).__name__, self.all_hypers(), group)

    def _check_keys(self, group: dict, index: int) -> None:
        """Refuse a key that is neither ``params``, a hyperparameter of this sampler nor one of
        torch.optim's own (:data:`TORCH_GROUP_KEYS`), naming it and the valid ones."""
        _hyper.check_keys(type(self).__name__, self.all_hypers(), group, index)

    def add_param_group(self, param_group: dict) -> None:
        """torch.optim's, then the group's keys, hyperparameters and parameters are checked; a group
        that fails is taken out again, so the sampler is left as it was.

        A key that is neither ``params``, one of the sampler's hyperparameters nor one that
        torch.optim's own machinery keeps in a group (:data:`TORCH_GROUP_KEYS`) is refused: a
        misspelt ``{"params": ..., "lr ": 0.1}`` or another optimiser's ``weight_decay`` would
        otherwise be ignored without a word.
        """
        owner = type(self).__name__
        if isinstance(param_group, dict):
            self._check_keys(param_group, len(self.param_groups))
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._validate(group)
            _hyper.check_params(owner, group, len(self.param_groups) - 1)
        except BaseException:
            self.param_groups.pop()
            raise

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["sampler"] = _class_name(type(self))
        sd["step_count"] = self._steps_done
        if self.generator is not None:
            sd["generator_state"] = self.generator.get_state()
        if self._streams:
            sd["noise_stream_states"] = [g.get_state() for g in self._streams]
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """torch.optim's, plus the step count, the generator's state and the noise streams' states.
        A state saved by another sampler class (its ``sampler`` entry), a group with a key this
        sampler does not read, and hyperparameters out of range are refused before anything changes."""
        state_dict = dict(state_dict)
        writer = state_dict.pop("sampler", None)
        if writer is not None and writer != _class_name(type(self)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state was saved by {writer}, not by "
                             f"{_class_name(type(self))}; its state (velocities, preconditioners) means something else "
                             f"here")
        for i, group in enumerate(state_dict.get("param_groups", [])):
            self._check_keys(group, i)
            self._validate(dict(group))
        gen_state = state_dict.pop("generator_state", None)
        streams = _noise.streams_from_states(f"{type(self).__name__}.load_state_dict",
                                             state_dict.pop("noise_stream_states", []))
        if gen_state is not None and self.generator is None:
            warnings.warn(
                f"{type(self).__name__}.load_state_dict: the saved state holds a generator's state but this "
                f"sampler draws from the global generator; the saved generator state is not restored (build the "
                f"sampler with generator= to continue the chain bit for bit)",
                stacklevel=2,
            )
        step_count = int(state_dict.pop("step_count", 0))
        super().load_state_dict(state_dict)  # torch's checks (group count and sizes) first: a refused state changes nothing
        self._step_counter = step_count
        self._staged.clear()
        self._bucket_cache.clear()
        self._rechecker.clear()
        if gen_state is not None and self.generator is not None:
            self.generator.set_state(gen_state)
        self._streams = streams
        for group in self.param_groups:
            self._validate(group)

    # ------------------------------------------------------------------ noise
    def _noise(self, params: list[torch.Tensor], std: float = 1.0) -> list[torch.Tensor]:
        """N(0, std^2) draws shaped like ``params``: views of one cached flat buffer that ``normal_``
        fills in place (one pass over memory; a step allocates nothing).

        On the CPU the buffer is drawn in blocks of :data:`NOISE_BLOCK_NUMEL` (2^16) values, block k
        from noise stream k (stream 0: the sampler's generator or the global one; streams 1, 2, ...:
        the sampler's own, seeded from stream 0 when first needed and saved in ``state_dict()``), in
        parallel when torch has several threads; the draws do not depend on the thread count. A
        bucket of at most 2^16 values is exactly ``buffer.normal_(0, std, generator=generator)``.
        Elsewhere the buffer is drawn from stream 0, one call per run of parameters (see
        :mod:`sgmcmc._noise`).
        """
        _buf, views, draws = self._noise_buffers.entry(params)
        _noise.draw(draws, std, self.generator, self._streams)
        return views

    # ------------------------------------------------------------------ step
    def _check_finite(
        self, grads: list[torch.Tensor], group_index: int, offsets: list[int], witness: torch.Tensor | None = None,
        group: dict | None = None, params: list[torch.Tensor] | None = None,
    ) -> None:
        """Raise :class:`NonFiniteGradientError` if any gradient holds a NaN or an Inf.

        The fast path is one cheap reduction and one device sync: the sampler's ``witness`` from
        :meth:`_prepare` when it gave one, else the gradients' 2-norms, summed, or the sum of a
        single gradient (finite exactly when every element is finite, unless it overflows). Only
        when that is not finite is each gradient checked element-wise, so a huge but finite
        gradient whose reduction overflows is not mistaken for a diverged chain. A sampler's
        witness that is not finite while every gradient is means its own staged values overflowed
        (psgld's g^2 past the dtype's range would freeze the chain with V = inf) if
        :meth:`_staged_finite` says so: that step is refused as well.
        """
        if grads[0].device.type == "meta":  # no values to check
            return
        if witness is not None:
            total = witness
        elif len(grads) > 1:
            total = torch.stack(torch._foreach_norm(grads)).sum()
        else:
            total = grads[0].sum()  # cheaper than a norm; an overflow is confirmed element-wise below
        if math.isfinite(total.item()):
            return
        bad = next((i for i, g in enumerate(grads) if not bool(torch.isfinite(g).all())), None)
        if bad is None and witness is not None and not self._staged_finite(group, params):
            # every gradient is finite but the sampler's own staged values overflowed (psgld's
            # g^2 beyond the dtype's range): the update would be inf or 0, so it is refused too
            big = max(range(len(grads)), key=lambda i: float(grads[i].abs().max()))
            what = (f"the update overflowed {grads[big].dtype} (param group {group_index}, parameter {offsets[big]}: "
                    f"the largest |gradient| is {float(grads[big].abs().max()):.3g})")
        elif bad is None:  # the norm overflowed; every element is finite
            return
        else:
            names = self.param_groups[group_index].get("param_names")  # kept by torch for named_parameters()
            named = f" ({names[offsets[bad]]!r})" if names and offsets[bad] < len(names) else ""
            big, what = bad, (f"non-finite gradient (NaN or Inf) in parameter {offsets[bad]}{named} of param group "
                              f"{group_index}")
        raise NonFiniteGradientError(
            f"{type(self).__name__}: {what} at step {self._steps_done}; the chain has diverged "
            f"(try a smaller lr; parameters were left at their last finite values)",
            step=self._steps_done,
            group_index=group_index,
            param_index=offsets[big],
        )

    @property
    def _steps_done(self) -> int:
        return getattr(self, "_step_counter", 0)

    def _buckets(self) -> list:
        """(group index, group, params, grads, offsets) for every (group, device, dtype) bucket of
        parameters with a gradient (cached; see :class:`sgmcmc._buckets.BucketCache`)."""
        return self._bucket_cache.work(self.param_groups, self.state, type(self).__name__)

    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One update of every parameter that has a gradient (``grad is None`` is skipped).

        Step pre/post hooks (``register_step_pre_hook``, the global ones) and the profiler's
        ``Optimizer.step#...`` range work as for any torch optimizer; when none is registered or
        recording, the step skips torch's wrapper for them (it costs ~15 us, a third of a step on a
        small model).
        """
        if self._torch_wraps_step or not (
            self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
            or _global_optimizer_pre_hooks or _global_optimizer_post_hooks or _profiler_enabled()
        ):
            return self._step(closure)
        return _HOOKED_STEP(self, closure)

    step.hooked = True  # torch.optim: do not wrap; ``step`` runs the hooks itself when there are any

    def _patch_step_function(self) -> None:
        super()._patch_step_function()
        # a subclass that overrides ``step`` gets torch's wrapper (hooks, profiling) as usual, and
        # ``Sampler.step`` (if it calls it) must not run the hooks a second time
        self._torch_wraps_step = type(self).step is not Sampler.step

    def _step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._buckets()
        self._rechecker(self, work)
        if torch.is_grad_enabled():
            torch._C._set_grad_enabled(False)
            try:
                self._run_buckets(work)
            finally:
                torch._C._set_grad_enabled(True)
        else:  # a loop under no_grad (the toy tasks'): nothing to switch
            self._run_buckets(work)
        self._step_counter = self._steps_done + 1
        return loss

    def _run_buckets(self, work: list) -> None:
        """Prepare and check every bucket, then update every bucket (grad mode off).

        Written for a small model's step, where Python is a third of it: a sampler that does not
        override :meth:`_prepare` is not asked, and the common finiteness check (one reduction,
        finite) is made here; only a bucket whose reduction is not finite, or that has no cheap one,
        goes to :meth:`_check_finite`.
        """
        prepares = _prepares(type(self))
        witnesses = [self._prepare(group, params, grads) for _gi, group, params, grads, _offsets in work] \
            if prepares else None
        if self.check_finite:
            for b, (gi, group, params, grads, offsets) in enumerate(work):
                witness = witnesses[b] if prepares else None
                g0 = grads[0]
                if not g0.is_meta:
                    total = witness if witness is not None else (g0.sum() if len(grads) == 1 else None)
                    if total is not None and math.isfinite(total.item()):
                        continue
                self._check_finite(grads, gi, offsets, witness, group, params)
        # every gradient was checked before any parameter or state changes
        for _gi, group, params, grads, _offsets in work:
            self._update(group, params, grads)

    def _prepare(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor | None:
        """Optional first phase of a bucket's update, run for every bucket before any :meth:`_update`.

        It may read the gradients and fill the sampler's own scratch buffers but must change
        neither the parameters nor ``self.state``. It returns a 0-dim tensor that is finite
        whenever every gradient is (a sum over a buffer into which every gradient element entered),
        or None to let the base class reduce the gradients itself. The default does nothing.
        """
        return None

    def _staged_finite(self, group: dict | None, params: list[torch.Tensor] | None) -> bool:
        """Asked only when :meth:`_prepare`'s witness is not finite while every gradient is: is every
        value the sampler staged for this bucket finite (so only the witness's sum overflowed)?
        The default says yes; a sampler whose staged values can overflow on finite gradients
        (psgld's g^2) checks them, and a False refuses the step."""
        return True

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """Update one bucket in place, reading every hyperparameter from ``group``; the noise is
        drawn here with :meth:`_noise` (once per bucket and step, after anything that may fail)."""
        raise NotImplementedError

    # helpers for subclasses
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

    def _state_list(self, params: list[torch.Tensor], key: str, init: Callable[[torch.Tensor], Any]) -> list:
        """``self.state[p][key]`` of every parameter of the bucket, created by ``init(p)`` where missing."""
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


_PREPARES: dict[type, bool] = {}


def _prepares(cls: type) -> bool:
    """Does ``cls`` override :meth:`Sampler._prepare` (cached per class)?"""
    found = _PREPARES.get(cls)
    if found is None:
        found = _PREPARES[cls] = cls._prepare is not Sampler._prepare
    return found


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain_step(self: Sampler, closure=None):
    return self._step(closure)


#: ``Sampler._step`` inside torch.optim's own wrapper: the hooks and the profiler range
_HOOKED_STEP = torch.optim.Optimizer.profile_hook_step(_plain_step)
