"""Gaussian noise for the samplers: one flat buffer per bucket, filled in place, and on the CPU
drawn in blocks from parallel noise streams.

A bucket's buffer is drawn as a list of (flat slice, stream) draws (:func:`draws`): on the CPU,
blocks of :data:`NOISE_BLOCK_NUMEL` values, block k from stream k, so that several threads can
draw them at once (:class:`BlockDraw`, on a small pool of daemon threads) while the values do not
depend on which thread drew which block; on other devices the runs of parameters of
:func:`segments`, all from stream 0. Stream 0 is the sampler's generator (or the global one);
streams 1, 2, ... are the sampler's own generators, each seeded from stream 0 the first time a
bucket needs it (:func:`stream_generators`). Both layouts are part of the definition of a chain:
changing them changes the draws.
"""

from __future__ import annotations

import os
import queue
import threading

import torch

__all__ = ["NOISE_BLOCK_NUMEL", "NoiseBuffers", "BlockDraw", "draw", "stream_generators"]

#: on the CPU a bucket's noise is drawn in blocks of this many values, block k from stream k
#: (see ``Sampler._noise``); part of the definition of a chain: changing it changes the draws
NOISE_BLOCK_NUMEL = 1 << 16

#: off the CPU a bucket's noise is drawn in runs of parameters of at least this many values (or an
#: eighth of the bucket, if more), one ``normal_`` call each; part of the definition of a chain there
SEGMENT_MIN_NUMEL = 1 << 16


def segments(buf: torch.Tensor, numels: list[int]) -> list[tuple[torch.Tensor, int, int]]:
    """Runs of consecutive parameters of >= max(2^16, total / 8) values each (the last may be
    smaller): (flat slice of ``buf``, first parameter, end parameter)."""
    target = max(SEGMENT_MIN_NUMEL, sum(numels) // 8)
    out, start, first, size = [], 0, 0, 0
    for i, n in enumerate(numels):
        size += n
        if size >= target or i == len(numels) - 1:
            out.append((buf[start:start + size], first, i + 1))
            start, first, size = start + size, i + 1, 0
    return out


def draws(buf: torch.Tensor, numels: list[int]) -> list[tuple[torch.Tensor, int]]:
    """How a bucket's buffer is drawn: (flat slice, noise stream) in order. On the CPU, blocks of
    :data:`NOISE_BLOCK_NUMEL` values, block k from stream k (so they can be drawn in parallel);
    elsewhere the :func:`segments`, from stream 0."""
    if buf.device.type != "cpu":
        return [(flat, 0) for flat, _lo, _hi in segments(buf, numels)]
    size = NOISE_BLOCK_NUMEL
    return [(buf[start:start + size], k) for k, start in enumerate(range(0, max(buf.numel(), 1), size))]


class NoiseBuffers:
    """Per bucket: one flat buffer, its per-parameter views and its draws, cached so that a step
    allocates nothing. Rebuilt on demand (never pickled)."""

    __slots__ = ("buffers", "views", "by_list")

    def __init__(self):
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.views: dict[tuple, tuple] = {}
        self.by_list: dict[int, tuple[list, tuple]] = {}

    def entry(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple]]:
        """(flat buffer, per-parameter views, draws) for this bucket (see :func:`draws`)."""
        # fast path: the bucket lists ``step()`` caches are the same objects step after step
        entry = self.by_list.get(id(params))
        if entry is not None and entry[0] is params:
            return entry[1]
        first = params[0]
        key = (id(first), first.device, first.dtype, tuple(p.shape for p in params))
        found = self.views.get(key)
        if found is None:
            numels = [p.numel() for p in params]
            bkey = (id(first), first.device, first.dtype)  # buckets are disjoint: the first parameter names one
            buf = self.buffers.get(bkey)
            if buf is None or buf.numel() != sum(numels):
                buf = torch.empty(sum(numels), device=first.device, dtype=first.dtype)
                self.buffers[bkey] = buf
                self.views = {k: v for k, v in self.views.items() if k[:3] != bkey}
                self.by_list.clear()
            views = [buf.view(first.shape)] if len(params) == 1 else [
                chunk.view(p.shape) for chunk, p in zip(torch.split(buf, numels), params)
            ]
            found = self.views[key] = (buf, views, draws(buf, numels))
        if len(self.by_list) > 64:  # callers that pass a fresh list each time
            self.by_list.clear()
        self.by_list[id(params)] = (params, found)
        return found


def stream_generators(generator: torch.Generator | None, streams: list[torch.Generator],
                      count: int) -> list[torch.Generator | None]:
    """Noise streams 0 .. count - 1: ``generator`` (None: the global one), then ``streams``, seeding
    the missing ones from stream 0 in order (one int64 draw each) and appending them to ``streams``."""
    if len(streams) < count - 1:
        parent = generator if generator is not None else torch.default_generator
        while len(streams) < count - 1:
            seed = int(torch.randint(0, 2**63 - 1, (), generator=parent, dtype=torch.int64))
            streams.append(torch.Generator().manual_seed(seed))
    return [generator, *streams[:count - 1]]


def streams_from_states(owner: str, states: list) -> list[torch.Generator]:
    """Noise streams 1, 2, ... rebuilt from their saved states (``state_dict()["noise_stream_states"]``)."""
    streams = []
    try:
        for st in states:
            streams.append(torch.Generator())
            streams[-1].set_state(st)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"{owner}: 'noise_stream_states' must be a list of CPU generator states "
                         f"(torch.Generator().get_state()): {exc}") from None
    return streams


def draw(bucket_draws: list[tuple[torch.Tensor, int]], std: float, generator: torch.Generator | None,
         streams: list[torch.Generator]) -> None:
    """Fill a bucket's draws with N(0, std^2): one stream in line; several in parallel (one block
    per ``normal_`` call, as many threads as torch has), the same values either way."""
    if bucket_draws[-1][1] == 0:  # one stream (the toy tasks' hot path): the sampler's generator, in line
        for flat, _stream in bucket_draws:
            flat.normal_(0.0, std, generator=generator)
        return
    generators = stream_generators(generator, streams, bucket_draws[-1][1] + 1)
    blocks = [(flat, generators[stream]) for flat, stream in bucket_draws]
    helpers = min(torch.get_num_threads(), len(blocks)) - 1
    if helpers < 1:
        for flat, gen in blocks:
            flat.normal_(0.0, std, generator=gen)
    else:
        BlockDraw(blocks, std)(helpers)


class _DrawPool:
    """A pool of daemon threads that help a :class:`BlockDraw`. One pool per process (rebuilt after
    a fork), grown on demand; every thread runs its ops on one torch thread."""

    def __init__(self):
        self.pid = os.getpid()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.size = 0

    def grow(self, size: int) -> None:
        while self.size < size:
            ready = threading.Event()
            threads = torch.get_num_threads()
            threading.Thread(target=self._loop, args=(ready,), name=f"sgmcmc-noise-{self.size}", daemon=True).start()
            ready.wait()
            # torch.set_num_threads in the thread also set the count that threads started later begin
            # with; set it back (this thread's own count is unchanged)
            torch.set_num_threads(threads)
            self.size += 1

    def _loop(self, ready: threading.Event) -> None:
        # one block per normal_ call on one thread: a second OpenMP team beside the caller's costs more
        torch.set_num_threads(1)
        ready.set()
        while True:
            self.jobs.get().run()

    def submit(self, job) -> None:
        self.jobs.put(job)


_POOL: _DrawPool | None = None
_POOL_LOCK = threading.Lock()


def draw_pool(size: int = 1) -> _DrawPool:
    """The process's pool, with at least ``size`` threads."""
    global _POOL
    pool = _POOL
    if pool is None or pool.pid != os.getpid() or pool.size < size:
        with _POOL_LOCK:
            if _POOL is None or _POOL.pid != os.getpid():
                _POOL = _DrawPool()
            _POOL.grow(size)
            pool = _POOL
    return pool


class BlockDraw:
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
        pool = draw_pool(helpers)
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
