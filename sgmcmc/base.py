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
``normal_`` (from the global generator, or the ``generator=`` given at construction; on the CPU a
large buffer is drawn in blocks of 2^16 values from parallel noise streams, see :meth:`_noise`).

A step has two phases so that a NaN or Inf gradient is caught before anything changes: every
bucket is first prepared (:meth:`_prepare`: optional work that reads the gradients but changes
neither the parameters nor the sampler state) and checked, and only then updated. A sampler whose
preparation already writes a flat buffer that depends on every gradient element returns a cheap
reduction of it as the finiteness witness, which saves the base class its own pass over the
gradients.

A sampler may also declare its noise (:meth:`_noise_std`) and split its update into
:meth:`_update` and :meth:`_update_noise`; with ``overlap_noise`` the step then draws the noise on
the calling thread while a worker thread runs the rest (opt-in: see the constructor).
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import queue
import threading
import warnings
import weakref
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

__all__ = ["Sampler", "Hyper", "NonFiniteGradientError", "HyperparameterError", "Diverged"]


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


class Diverged(Exception):
    """A chain left the finite numbers (or, for a task, produced a dead model): raised by the code
    that runs the chain, never by ``step()`` itself. ``step`` is where it stopped, ``reason`` why."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


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


#: below this many noise values a step draws its noise in line (the thread hand-off costs ~30-60 us)
_OVERLAP_MIN_NUMEL = 1 << 17


def _profiler_enabled() -> bool:
    return torch.autograd.profiler._is_profiler_enabled or torch._C._autograd._profiler_enabled()


class _NoiseAborted(RuntimeError):
    """The stepping thread failed before it drew this bucket's noise (the step is abandoned)."""


class _StepJob:
    """The body of one overlapped step, run on the worker thread, while the stepping thread draws
    the declared noise, segment by segment (see ``Sampler._noise_entry``), signalling each one.

    ``fills`` are (bucket position, segment, std) in draw order; ``draws`` are (flat slice, stream,
    std, fills released) in order: the bucket's draws (see ``Sampler._noise_entry``) drawn one after
    another, each releasing the segments it completes. A sampler that splits its update
    (``_update_noise``) gets each segment's noise phase as soon as that segment is drawn, so only
    the last segment's noise phase is left when the draw ends; one that draws inside ``_update``
    (``_noise``) waits there for its whole bucket.
    """

    __slots__ = ("sampler", "work", "fills", "draws", "events", "std", "all_drawn", "aborted", "done", "error")

    def __init__(self, sampler: "Sampler", work: list, fills: list[tuple[int, tuple, float]], draws: list[tuple]):
        self.sampler = sampler
        self.work = work
        self.fills = fills
        self.draws = draws
        self.events = [threading.Event() for _ in fills]
        self.std = {}  # id(bucket buffer) -> (declared std, index of its last segment), until taken
        for k, (b, _seg, std) in enumerate(fills):
            self.std[id(sampler._noise_entry(work[b][2])[0])] = (std, k)
        self.all_drawn = threading.Event()
        self.aborted = False
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        sampler = self.sampler
        try:
            with torch.no_grad():
                sampler._run_buckets(self.work, noise_phase=False)
                if sampler._splits_noise:
                    for k, (b, (_flat, lo, hi), _std) in enumerate(self.fills):
                        self.events[k].wait()
                        if self.aborted:
                            raise _NoiseAborted("the stepping thread stopped before drawing this noise")
                        _gi, group, params, grads, _offsets = self.work[b]
                        noise = sampler._noise_like(params)
                        sampler._update_noise(group, params[lo:hi], grads[lo:hi], noise[lo:hi])
                    self.std.clear()
            if self.std and not self.aborted:
                raise RuntimeError(
                    f"{type(sampler).__name__}: _noise_std declared noise that _update never drew "
                    f"(scales {sorted(s for s, _ in self.std.values())}); a sampler must call _noise once "
                    f"per bucket it declares"
                )
        except BaseException as exc:  # re-raised in the stepping thread
            self.error = exc
        finally:
            self.done.set()

    def draw(self) -> None:
        """In the stepping thread: every draw in order, releasing each segment as soon as it is drawn."""
        try:
            generators = self.sampler._stream_generators(1 + max(stream for _f, stream, _s, _u in self.draws))
            released = 0
            for flat, stream, std, upto in self.draws:
                flat.normal_(0.0, std, generator=generators[stream])
                while released < upto:
                    self.events[released].set()
                    released += 1
        except BaseException:
            self.aborted = True
            raise
        finally:
            for event in self.events:
                event.set()
            self.all_drawn.set()

    def take(self, buf: torch.Tensor, std: float) -> bool:
        """In the worker (a sampler drawing in ``_update``): wait for the bucket behind ``buf``;
        False if its draw is not (or no longer) declared: the caller then draws it in line."""
        declared = self.std.pop(id(buf), None)
        if declared is None:
            self.all_drawn.wait()  # an undeclared draw comes after every declared one
            return False
        self.events[declared[1]].wait()
        if self.aborted:
            raise _NoiseAborted("the stepping thread stopped before drawing this noise")
        if declared[0] != std:
            raise RuntimeError(
                f"{type(self.sampler).__name__}: _noise(std={std!r}) but _noise_std declared {declared[0]!r} "
                f"for this bucket"
            )
        return True

    def wait(self) -> None:
        """Until the worker is done with the parameters, whatever interrupts the wait (e.g. Ctrl-C:
        the worker must not outlive the step; the interrupt is raised once it is done)."""
        _wait_through(self.done)


class _NoiseWorker:
    """A pool of daemon threads that run jobs (objects with ``run()``): an overlapped step's
    :class:`_StepJob`, or helpers of a parallel block draw (:class:`_BlockDraw`). One pool per
    process (rebuilt after a fork), grown on demand; every thread runs its ops on one torch thread."""

    def __init__(self):
        self.pid = os.getpid()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.size = 0
        self.grow(1)

    def grow(self, size: int) -> None:
        while self.size < size:
            ready = threading.Event()
            threads = torch.get_num_threads()
            threading.Thread(target=self._loop, args=(ready,), name=f"sgmcmc-noise-{self.size}", daemon=True).start()
            ready.wait()
            # torch.set_num_threads in the worker also set the count that threads started later begin
            # with; set it back (this thread's own count is unchanged)
            torch.set_num_threads(threads)
            self.size += 1

    def _loop(self, ready: threading.Event) -> None:
        # the worker's ops run on one thread: a second OpenMP team spinning beside the stepping
        # thread's own (and beside the forward/backward that follows) costs more than it gains
        torch.set_num_threads(1)
        ready.set()
        while True:
            self.jobs.get().run()

    def submit(self, job) -> None:
        self.jobs.put(job)


_WORKER: _NoiseWorker | None = None
_WORKER_LOCK = threading.Lock()


def _noise_worker(size: int = 1) -> _NoiseWorker:
    """The process's pool, with at least ``size`` threads."""
    global _WORKER
    worker = _WORKER
    if worker is None or worker.pid != os.getpid() or worker.size < size:
        with _WORKER_LOCK:
            if _WORKER is None or _WORKER.pid != os.getpid():
                _WORKER = _NoiseWorker()
            _WORKER.grow(size)
            worker = _WORKER
    return worker


#: param-group keys that torch.optim itself keeps beside an optimiser's hyperparameters (named
#: parameters, and what its learning-rate schedulers and SWA write into a group); a sampler accepts
#: them in a group it is given and ignores them
TORCH_GROUP_KEYS = frozenset({"param_names", "initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum",
                              "swa_lr"})

#: on the CPU a bucket's noise is drawn in blocks of this many values, block k from stream k
#: (see ``Sampler._noise``); part of the definition of a chain: changing it changes the draws
NOISE_BLOCK_NUMEL = 1 << 16


class _BlockDraw:
    """One parallel draw: the calling thread and up to ``helpers`` pool threads take blocks from a
    shared queue and fill each from its own generator, so the draws do not depend on which thread
    drew which block (nor on how many threads there were). Helpers that start after the caller has
    emptied the queue return at once; the caller waits only for those that started."""

    __slots__ = ("todo", "std", "lock", "active", "closed", "idle", "error")

    def __init__(self, blocks: list[tuple[torch.Tensor, torch.Generator | None]], std: float):
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        for block in blocks:
            self.todo.put(block)
        self.std = std
        self.lock = threading.Lock()
        self.active = 0
        self.closed = False
        self.idle = threading.Event()
        self.error: BaseException | None = None

    def _drain(self) -> None:
        while True:
            try:
                flat, generator = self.todo.get_nowait()
            except queue.Empty:
                return
            flat.normal_(0.0, self.std, generator=generator)

    def run(self) -> None:  # a pool thread
        with self.lock:
            if self.closed:
                return
            self.active += 1
        try:
            self._drain()
        except BaseException as exc:  # re-raised in the calling thread
            self.error = exc
            self._empty()
        finally:
            with self.lock:
                self.active -= 1
                if self.closed and self.active == 0:
                    self.idle.set()

    def _empty(self) -> None:
        while True:
            try:
                self.todo.get_nowait()
            except queue.Empty:
                return

    def __call__(self, helpers: int) -> None:  # the calling thread
        pool = _noise_worker(helpers)
        try:
            for _ in range(helpers):
                pool.submit(self)
            self._drain()
        except BaseException:
            self._empty()
            raise
        finally:
            with self.lock:
                self.closed = True
                if self.active == 0:
                    self.idle.set()
            _wait_through(self.idle)  # no pool thread may still write into the buffer when this returns
        if self.error is not None:
            raise self.error


def _wait_through(event: threading.Event) -> None:
    """Wait for ``event`` even if the wait is interrupted (Ctrl-C); an interrupt that came meanwhile
    is raised once the event is set, so it is not lost."""
    pending = None
    while True:
        try:
            event.wait()
            break
        except BaseException as exc:
            pending = exc
    if pending is not None:
        raise pending


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
    overlap_noise: draw the noise on the calling thread while a worker thread runs the rest of the
        update (CPU only): False (default) never, None decides per step (>= 2 torch threads and
        >= 2^17 noise values), True always. The chain is the same to the bit either way. It makes
        an isolated ``step()`` cost about the draw alone, but in a training loop on a 2-core
        machine it was no faster (the worker competes with the forward/backward), so it is opt-in.
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
        overlap_noise: bool | None = False,
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
        self._init_transient()
        if overlap_noise not in (None, True, False):
            raise HyperparameterError(f"{owner}: overlap_noise={overlap_noise!r}; valid: None (auto), True, False")
        self.overlap_noise = overlap_noise
        self._streams: list[torch.Generator] = []  # noise streams 1, 2, ... (stream 0 is ``generator``)
        super().__init__(params, defaults)

    def _init_transient(self) -> None:
        """Caches and scratch buffers: rebuilt on demand, never pickled or copied (subclasses that
        keep their own extend this)."""
        self._noise_buffers: dict[tuple, torch.Tensor] = {}
        self._noise_views: dict[tuple, tuple] = {}
        self._noise_by_list: dict[int, tuple[list, tuple]] = {}
        self._overlap_job: _StepJob | None = None
        self._bucket_cache: tuple | None = None
        self._bucket_numel = 0  # values in the cached buckets: an upper bound on a step's noise
        self._staged: set[int] = set()
        # group index -> (the group, a getter of its hyperparameters, their values as last checked, its number of keys)
        self._checked: dict[int, tuple] = {}

    def __getstate__(self) -> dict:
        """What ``pickle`` and ``copy.deepcopy`` keep: torch.optim's state plus the sampler's own
        settings, generator and step count (caches are rebuilt)."""
        state = super().__getstate__()
        state.update(generator=self.generator, check_finite=self.check_finite, overlap_noise=self.overlap_noise,
                     _step_counter=self._steps_done, _streams=list(self._streams))
        return state

    def __setstate__(self, state: dict) -> None:
        self._init_transient()
        state.setdefault("_streams", [])
        super().__setstate__(state)

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

    def _recheck(self, work: list) -> None:
        """Check again, before any parameter moves, the hyperparameters of a stepping group whose
        values (or keys) changed since they were last checked: a scheduler's new ``lr``, or a value
        a user wrote into ``param_groups`` (a negative ``lr``, ``num_data = 0``, a misspelt or a
        deleted key) raises HyperparameterError naming it, and the chain is left as it was. An
        unchanged group costs one ``itemgetter`` call and a tuple comparison."""
        checked = self._checked
        for gi, group, _params, _grads, _offsets in work:
            seen = checked.get(gi)
            if seen is not None and seen[0] is group and len(group) == seen[3]:
                try:
                    if seen[1](group) == seen[2]:
                        continue
                except KeyError:  # a hyperparameter deleted from the group: the check below names it
                    pass
            self._check_keys(group, gi)
            self._validate(group)
            getter = operator.itemgetter(*self.all_hypers())
            checked[gi] = (group, getter, getter(group), len(group))

    def _check_keys(self, group: dict, index: int) -> None:
        """Refuse a key that is neither ``params``, a hyperparameter of this sampler nor one of
        torch.optim's own (:data:`TORCH_GROUP_KEYS`), naming it and the valid ones."""
        valid = self.all_hypers()
        unknown = sorted(k for k in group if k != "params" and k not in valid and k not in TORCH_GROUP_KEYS)
        if unknown:
            given = ", ".join(f"{k!r}" for k in unknown)
            raise HyperparameterError(
                f"{type(self).__name__}: unknown key(s) {given} in param group {index}; valid: params, "
                f"{', '.join(sorted(valid))} (and torch.optim's own {', '.join(sorted(TORCH_GROUP_KEYS))})"
            )

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
            for i, p in enumerate(group["params"]):
                if not p.is_floating_point():
                    kind = "complex" if p.is_complex() else "non-floating"
                    raise HyperparameterError(
                        f"{owner}: parameter {i} of param group {len(self.param_groups) - 1} is {kind} "
                        f"({p.dtype}); valid: real floating-point tensors (float16, bfloat16, float32, float64)"
                        + ("; sample the real and imaginary parts as a real tensor (torch.view_as_real)"
                           if p.is_complex() else "")
                    )
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
        stream_states = state_dict.pop("noise_stream_states", [])
        streams = []
        try:
            for st in stream_states:
                streams.append(torch.Generator())
                streams[-1].set_state(st)
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"{type(self).__name__}.load_state_dict: 'noise_stream_states' must be a list of "
                             f"CPU generator states (torch.Generator().get_state()): {exc}") from None
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
        self._bucket_cache = None
        self._checked.clear()
        if gen_state is not None and self.generator is not None:
            self.generator.set_state(gen_state)
        self._streams = streams
        for group in self.param_groups:
            self._validate(group)

    # ------------------------------------------------------------------ noise
    def _noise_std(self, group: dict) -> float:
        """The standard deviation at which this sampler's :meth:`_update` will call :meth:`_noise`
        for the buckets of ``group`` this step (0 for none).

        Declaring it lets ``step()`` start the draw before the bucket is prepared, on a background
        thread where that pays (see ``overlap_noise``), while the deterministic part of the update
        runs. A sampler that does not declare it (the default, 0) still calls ``_noise`` as it likes
        and gets the same draws, drawn on the spot.
        """
        return 0.0

    def _noise(self, params: list[torch.Tensor], std: float = 1.0) -> list[torch.Tensor]:
        """N(0, std^2) draws shaped like ``params``: views of one flat buffer filled in place.

        ``normal_`` fills the bucket's buffer in place; the scale ``std`` costs nothing extra (it
        is applied inside the Box-Muller transform), so the noise is a single pass over memory,
        and the views are cached, so a step allocates nothing.

        On the CPU the buffer is drawn in blocks of :data:`NOISE_BLOCK_NUMEL` (2^16) values, block k
        from noise stream k: stream 0 is the sampler's generator (or the global one), streams
        1, 2, ... are generators of the sampler's own, each seeded from stream 0 (one ``randint``
        draw) the first time a bucket needs it, and saved in ``state_dict()``. torch's CPU
        ``normal_`` runs on one thread, so with several torch threads the blocks are drawn in
        parallel (a 478k-value buffer in ~0.9 ms on 2 cores instead of ~1.6 ms); the draws do not
        depend on the thread count. A bucket of at most 2^16 values is one block: stream 0 alone,
        exactly ``buffer.normal_(0, std, generator=generator)``. On other devices the buffer is
        drawn from stream 0, one call per segment (see :meth:`_noise_entry`).

        If an overlapped ``step()`` is drawing this bucket (declared in :meth:`_noise_std`), this
        waits for that draw instead: the same streams, order and scale, so the same draws.
        """
        entry = self._noise_entry(params)
        job = self._overlap_job
        if job is None or not job.take(entry[0], std):
            draws = entry[3]
            if draws[-1][1] == 0:  # one stream (the toy tasks' hot path): the sampler's generator, in line
                for flat, _stream in draws:
                    flat.normal_(0.0, std, generator=self.generator)
            else:
                generators = self._stream_generators(draws[-1][1] + 1)
                blocks = [(flat, generators[stream]) for flat, stream in draws]
                helpers = min(torch.get_num_threads(), len(blocks)) - 1
                if helpers < 1:
                    for flat, generator in blocks:
                        flat.normal_(0.0, std, generator=generator)
                else:
                    _BlockDraw(blocks, std)(helpers)
        return entry[1]

    def _stream_generators(self, count: int) -> list[torch.Generator | None]:
        """Noise streams 0 .. count - 1: the sampler's generator (None: the global one), then its own
        streams, seeding the missing ones from stream 0 in order (one int64 draw each)."""
        if len(self._streams) < count - 1:
            parent = self.generator if self.generator is not None else torch.default_generator
            while len(self._streams) < count - 1:
                seed = int(torch.randint(0, 2**63 - 1, (), generator=parent, dtype=torch.int64))
                self._streams.append(torch.Generator().manual_seed(seed))
        return [self.generator, *self._streams[:count - 1]]

    def _noise_like(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        return self._noise_entry(params)[1]

    def _noise_entry(
        self, params: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple], list[tuple[torch.Tensor, int]]]:
        """(flat buffer, per-parameter views, segments, draws) for this bucket. A segment is (flat
        slice, first, end) over the parameters ``params[first:end]``: an overlapped step runs a
        segment's noise phase as soon as the draws covering it are done. A draw is (flat slice,
        stream): on the CPU the blocks of 2^16 values, block k from stream k; elsewhere the
        segments, all from stream 0. The noise is always drawn the same way, so the chain is the
        same whether steps overlap or not."""
        # fast path: the bucket lists ``step()`` caches are the same objects step after step
        entry = self._noise_by_list.get(id(params))
        if entry is not None and entry[0] is params:
            return entry[1]
        first = params[0]
        key = (id(first), first.device, first.dtype, tuple(p.shape for p in params))
        found = self._noise_views.get(key)
        if found is None:
            numels = [p.numel() for p in params]
            bkey = (id(first), first.device, first.dtype)  # buckets are disjoint: the first parameter names one
            buf = self._noise_buffers.get(bkey)
            if buf is None or buf.numel() != sum(numels):
                buf = torch.empty(sum(numels), device=first.device, dtype=first.dtype)
                self._noise_buffers[bkey] = buf
                self._noise_views = {k: v for k, v in self._noise_views.items() if k[:3] != bkey}
                self._noise_by_list.clear()
            views = [buf.view(first.shape)] if len(params) == 1 else [
                chunk.view(p.shape) for chunk, p in zip(torch.split(buf, numels), params)
            ]
            found = self._noise_views[key] = (buf, views, segments := _segments(buf, numels), _draws(buf, segments))
        if len(self._noise_by_list) > 64:  # callers that pass a fresh list each time
            self._noise_by_list.clear()
        self._noise_by_list[id(params)] = (params, found)
        return found

    def _noise_plan(self, work: list) -> tuple[list[tuple[int, tuple, float]], list[tuple]] | None:
        """The (bucket position, segment, std) fills of this step, in the order the buckets ask for
        them, and the draws that fill them (flat slice, stream, std, fills complete after it), if
        overlapping them with the rest of the update pays; else None (draw in line).

        ``torch``'s CPU ``normal_`` runs on one thread (one generator stream), so on a CPU with
        threads to spare the stepping thread draws the noise while a worker thread runs the rest of
        the step (the finiteness check, preconditioner, drift, velocity), then each segment's
        noise phase (:meth:`_update_noise`) as soon as that segment is drawn; the step costs about
        the draw alone plus the last segment's noise phase. The generator sees the same calls in
        the same order as without overlap, so the chain is the same to the bit. ``overlap_noise``:
        False (the default) never; None when every declared bucket is on the CPU, torch has >= 2
        threads and the draws total >= 2^17 values (below that the hand-off costs more than it
        hides); True whenever the declared buckets are on the CPU.
        """
        if self.overlap_noise is False or (
            self.overlap_noise is None and (self._bucket_numel < _OVERLAP_MIN_NUMEL or torch.get_num_threads() < 2)
        ):
            return None
        fills, draws, total = [], [], 0
        for b, (_gi, group, params, _grads, _offsets) in enumerate(work):
            std = self._declared_std(group)
            if std > 0.0:
                buf, _views, segments, bucket_draws = self._noise_entry(params)
                if buf.device.type != "cpu":
                    return None
                total += buf.numel()
                base = buf.storage_offset()
                ends = [flat.storage_offset() - base + flat.numel() for flat, _lo, _hi in segments]
                done = len(fills)
                for flat, stream in bucket_draws:
                    end = flat.storage_offset() - base + flat.numel()
                    draws.append((flat, stream, float(std), done + sum(e <= end for e in ends)))
                draws[-1] = (*draws[-1][:3], done + len(segments))  # the last draw completes the bucket
                fills.extend((b, seg, float(std)) for seg in segments)
        if not fills or (self.overlap_noise is None and total < _OVERLAP_MIN_NUMEL):
            return None
        return fills, draws

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
        parameters with a gradient. The grouping is cached: it is rebuilt only when the set of
        parameters with a gradient changes (a ``grad`` turning None or back, a parameter added, or
        moved to another device, dtype or shape). When every parameter still holds the very
        gradient tensor it held last step (a loop that writes its gradients in place, as the toy
        tasks do), the grouping is reused without asking each parameter for its device, dtype and
        shape: a new device, dtype or shape comes with a new gradient tensor (torch checks an
        assigned ``grad`` against its parameter). The cache holds those gradients by weak
        reference only, so a gradient set to None is freed at once, as without a sampler."""
        groups = self.param_groups
        cached = self._bucket_cache
        same_groups = cached is not None and _same_objects(cached[1], groups)
        if same_groups and _same_grads(groups, cached[3]):
            layout = cached[2]
        else:
            key = tuple(
                (id(p), p.device, p.dtype, p.shape, p.grad.is_sparse) if p.grad is not None else 0
                for group in groups for p in group["params"]
            )
            if same_groups and cached[0] == key:
                layout = cached[2]
            else:
                layout = []
                for gi, group in enumerate(groups):
                    buckets: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
                    for pi, p in enumerate(group["params"]):
                        if p.grad is None:
                            continue
                        if p.grad.is_sparse:
                            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                        b = buckets[(p.device, p.dtype)]
                        b[0].append(p)
                        b[1].append(pi)
                    layout.extend((gi, group, params, offsets) for params, offsets in buckets.values())
                self._bucket_numel = sum(p.numel() for _gi, _group, params, _offsets in layout for p in params)
                self._follow_params(layout)
            seen = [None if p.grad is None else weakref.ref(p.grad) for group in groups for p in group["params"]]
            self._bucket_cache = (key, list(groups), layout, seen)
        return [(gi, group, params, [p.grad for p in params], offsets) for gi, group, params, offsets in layout]

    def _follow_params(self, layout: list) -> None:
        """A parameter moved to another dtype or device mid-chain (``model.double()``, ``.to(...)``)
        takes its state along, as ``load_state_dict`` casts a saved state: a velocity or
        preconditioner keeps its values in the parameter's new dtype and device, and the next
        update runs instead of failing halfway through."""
        for _gi, _group, params, _offsets in layout:
            for p in params:
                st = self.state.get(p)
                if not st:
                    continue
                for k, v in st.items():
                    if (isinstance(v, torch.Tensor) and v.is_floating_point() and v.shape == p.shape
                            and (v.dtype != p.dtype or v.device != p.device)):
                        st[k] = v.to(device=p.device, dtype=p.dtype)

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
        self._recheck(work)
        plan = self._noise_plan(work) if work and self.overlap_noise is not False else None
        if plan is None:
            if torch.is_grad_enabled():
                torch._C._set_grad_enabled(False)
                try:
                    self._run_buckets(work)
                finally:
                    torch._C._set_grad_enabled(True)
            else:  # a loop under no_grad (the toy tasks'): nothing to switch
                self._run_buckets(work)
        else:
            # a step refused by the worker (a non-finite gradient) must leave the noise streams as an
            # in-line step leaves them (it checks before it draws): keep their states to put back
            generator = self.generator if self.generator is not None else torch.default_generator
            rng_state = generator.get_state()
            streams = [(g, g.get_state()) for g in self._streams]
            job = self._overlap_job = _StepJob(self, work, *plan)
            try:
                _noise_worker().submit(job)
                job.draw()
            finally:
                job.wait()
                self._overlap_job = None
            if job.error is not None:
                generator.set_state(rng_state)
                del self._streams[len(streams):]  # streams first seeded by this step are seeded again
                for g, st in streams:
                    g.set_state(st)
                raise job.error
        self._step_counter = self._steps_done + 1
        return loss

    @property
    def _splits_noise(self) -> bool:
        return _protocol(type(self))[1]

    def _declared_std(self, group: dict) -> float:
        """:meth:`_noise_std`, if it speaks for this class's ``_update`` (else 0: draw in line)."""
        return self._noise_std(group) if _protocol(type(self))[0] else 0.0

    def _run_buckets(self, work: list, noise_phase: bool = True) -> None:
        """Prepare and check every bucket, then update every bucket (grad mode off); with
        ``noise_phase`` and a sampler that splits its update, each bucket's noise phase too.

        Written for a small model's step, where Python is a third of it: the class's protocol is
        looked up once, a sampler that does not override :meth:`_prepare` is not asked, and the
        common finiteness check (one reduction, finite) is made here; only a bucket whose
        reduction is not finite, or that has no cheap one, goes to :meth:`_check_finite`.
        """
        _declares, split_update, prepares = _protocol(type(self))
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
        split = noise_phase and split_update
        for _gi, group, params, grads, _offsets in work:
            self._update(group, params, grads)
            if split:
                std = self._noise_std(group)
                if std > 0.0:
                    self._update_noise(group, params, grads, self._noise(params, std))

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
        """Update one bucket. A sampler either draws its noise here with :meth:`_noise`, or
        declares it (:meth:`_noise_std`) and adds it in :meth:`_update_noise`."""
        raise NotImplementedError

    def _update_noise(
        self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], noise: list[torch.Tensor]
    ) -> None:
        """Optional second half of :meth:`_update`, for a sampler that declares its noise
        (:meth:`_noise_std` > 0): called right after ``_update`` with the bucket's draws
        N(0, std^2). Splitting the update there lets ``step()`` run ``_update`` while the noise is
        drawn and this part once it is (see ``overlap_noise``), with no extra thread hand-off."""
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


_PROTOCOL: dict[type, tuple[bool, bool, bool]] = {}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _protocol(cls: type) -> tuple[bool, bool, bool]:
    """(does ``_noise_std`` speak for ``cls._update``, does ``cls`` split its update, does it
    override :meth:`Sampler._prepare`).

    A method counts only if it is defined by the class that defines ``_update`` or by a subclass of
    it: a subclass that overrides ``_update`` alone (drawing its own noise, say) must not inherit
    its parent's declared noise or noise phase.
    """
    found = _PROTOCOL.get(cls)
    if found is None:
        mro = cls.__mro__

        def owner(name: str) -> int:
            return next(i for i, k in enumerate(mro) if name in k.__dict__)

        upd = owner("_update")
        declares = owner("_noise_std") <= upd
        found = _PROTOCOL[cls] = (declares, declares and owner("_update_noise") <= upd,
                                  cls._prepare is not Sampler._prepare)
    return found


#: a noise segment closes once it holds this many values (or an eighth of its bucket, if more)
_SEGMENT_MIN_NUMEL = 1 << 16


def _draws(buf: torch.Tensor, segments: list[tuple]) -> list[tuple[torch.Tensor, int]]:
    """How a bucket's buffer is drawn: (flat slice, noise stream) in order. On the CPU, blocks of
    :data:`NOISE_BLOCK_NUMEL` values, block k from stream k (so they can be drawn in parallel);
    elsewhere the segments, from stream 0."""
    if buf.device.type != "cpu":
        return [(flat, 0) for flat, _lo, _hi in segments]
    size = NOISE_BLOCK_NUMEL
    return [(buf[start:start + size], k) for k, start in enumerate(range(0, max(buf.numel(), 1), size))]


def _segments(buf: torch.Tensor, numels: list[int]) -> list[tuple[torch.Tensor, int, int]]:
    """Runs of consecutive parameters of >= max(2^16, total / 8) values each (the last may be
    smaller): (flat slice of ``buf``, first parameter, end parameter)."""
    target = max(_SEGMENT_MIN_NUMEL, sum(numels) // 8)
    out, start, first, size = [], 0, 0, 0
    for i, n in enumerate(numels):
        size += n
        if size >= target or i == len(numels) - 1:
            out.append((buf[start:start + size], first, i + 1))
            start, first, size = start + size, i + 1, 0
    return out


def _same_objects(a: list, b: list) -> bool:
    """``a`` and ``b`` hold the same objects in the same order (identity, not equality)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is not y:
            return False
    return True


def _same_grads(groups: list[dict], seen: list) -> bool:
    """Every parameter of ``groups``, in order, holds the gradient ``seen`` names: a weak reference
    to it, or None for no gradient. Plain loops: a generator expression costs more than the whole
    check on a small model."""
    i = 0
    for group in groups:
        for p in group["params"]:
            if i == len(seen):
                return False
            ref, grad = seen[i], p.grad
            if (grad is not None) if ref is None else (grad is None or ref() is not grad):
                return False
            i += 1
    return i == len(seen)


def _plain_step(self: Sampler, closure=None):
    return self._step(closure)


#: ``Sampler._step`` inside torch.optim's own wrapper: the hooks and the profiler range
_HOOKED_STEP = torch.optim.Optimizer.profile_hook_step(_plain_step)
