"""``Sampler.step`` machinery: the noise drawn on a background thread (``overlap_noise``), the lean
path around torch.optim's hook/profiler wrapper, and the cached grouping of parameters.

Every test here can fail: the overlapped chain is compared bit for bit with the in-line one, hooks
are counted, the profiler's event is looked for, and the thread count is read back.
"""

from __future__ import annotations

import multiprocessing as mp
import sys

import pytest
import torch

import sgmcmc
from sgmcmc import NonFiniteGradientError

NOISY = ["sgld", "psgld", "sghmc", "underdamped"]
ALL = NOISY + ["sgd"]


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    # two dtypes: two buckets, each with its own noise buffer and its own draw
    return [
        torch.nn.Parameter(torch.randn(7, 5, generator=g)),
        torch.nn.Parameter(torch.randn(11, generator=g, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(3, 3, generator=g)),
    ]


def _chain(name, overlap, steps=30, generator=True, seed=7):
    params = _params()
    kw = {"generator": torch.Generator().manual_seed(seed)} if generator else {}
    opt = sgmcmc.get(name)(params, 0.01, num_data=50, overlap_noise=overlap, **kw)
    if not generator:
        torch.manual_seed(seed)
    g = torch.Generator().manual_seed(99)
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype) + p.detach()
        if t == 10:
            params[2].grad = None  # a parameter that skips a step changes the buckets
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("generator", [True, False], ids=["explicit-generator", "global-generator"])
def test_overlapped_noise_gives_the_same_chain_to_the_bit(name, generator):
    inline = _chain(name, overlap=False, generator=generator)
    overlapped = _chain(name, overlap=True, generator=generator)
    auto = _chain(name, overlap=None, generator=generator)  # small tensors: auto draws in line
    for a, b, c in zip(inline, overlapped, auto):
        assert torch.equal(a, b) and torch.equal(a, c)
    if name != "sgd":
        assert not torch.equal(inline[0], _chain(name, overlap=True, generator=generator, seed=8)[0])


def _big_chain(name, overlap, steps=4):
    g = torch.Generator().manual_seed(5)
    shapes = [(300, 300), (10,), (200, 400), (7,)]  # noise segments: [0], [1, 2], [3]
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    opt = sgmcmc.get(name)(params, 1e-3, num_data=50, overlap_noise=overlap, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) + p.detach()
        opt.step()
    return [p.detach().clone() for p in params], opt


@pytest.mark.parametrize("name", NOISY)
def test_segmented_noise_overlapped_gives_the_same_chain_to_the_bit(name):
    inline, opt = _big_chain(name, overlap=False)
    buf, _views, segments, _draws = opt._noise_entry(list(opt.param_groups[0]["params"]))
    assert [(lo, hi) for _flat, lo, hi in segments] == [(0, 1), (1, 3), (3, 4)]
    overlapped, _ = _big_chain(name, overlap=True)
    for a, b in zip(inline, overlapped):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NOISY)
def test_overlap_restores_the_thread_count_and_leaves_no_draw_running(name):
    threads = torch.get_num_threads()
    params = _params()
    opt = sgmcmc.get(name)(params, 0.01, num_data=50, overlap_noise=True)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert torch.get_num_threads() == threads
    assert opt._overlap_job is None
    params[1].grad[3] = float("nan")
    before = [p.detach().clone() for p in params]
    with pytest.raises(NonFiniteGradientError):
        opt.step()
    assert torch.get_num_threads() == threads
    assert opt._overlap_job is None
    assert all(torch.equal(b, p) for b, p in zip(before, params))


def test_auto_overlap_switches_on_for_large_cpu_buckets_with_threads_to_spare(monkeypatch):
    params = [torch.nn.Parameter(torch.zeros(1 << 17))]
    params[0].grad = torch.zeros(1 << 17)
    opt = sgmcmc.SGLD(params, 0.01, num_data=10, overlap_noise=None)
    assert sgmcmc.SGLD(params, 0.01, num_data=10).overlap_noise is False  # opt-in
    started = []
    real = sgmcmc.base._NoiseWorker.submit
    monkeypatch.setattr(sgmcmc.base._NoiseWorker, "submit", lambda self, job: (started.append(job), real(self, job)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        opt.step()
        assert len(started) == 1
        torch.set_num_threads(1)
        opt.step()
        assert len(started) == 1  # one torch thread: nothing to overlap with
    finally:
        torch.set_num_threads(threads)
    assert float(params[0].detach().std()) > 0


def test_overlap_noise_rejects_a_non_boolean():
    with pytest.raises(sgmcmc.HyperparameterError, match="overlap_noise='yes'"):
        sgmcmc.SGLD([torch.nn.Parameter(torch.zeros(2))], 0.1, num_data=1, overlap_noise="yes")


class InlineSGLD(sgmcmc.Sampler):
    """SGLD written the simple way: the noise drawn inside ``_update`` (no ``_update_noise``),
    declared so that an overlapped step draws it on the stepping thread while this waits."""

    def _noise_std(self, group):
        return self.noise_scale(group)

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        torch._foreach_add_(params, self._noise(params, std=self.noise_scale(group)))


def _inline_chain(cls, overlap, steps=20):
    params = _params()
    opt = cls(params, 0.01, num_data=50, overlap_noise=overlap, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(99)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
    return [p.detach().clone() for p in params]


def test_a_subclass_overriding_update_alone_does_not_inherit_declared_noise():
    class OwnNoise(sgmcmc.SGLD):  # draws at twice the scale; SGLD's _noise_std/_update_noise do not apply
        def _update(self, group, params, grads):
            torch._foreach_add_(params, self._noise(params, std=2 * self.noise_scale(group)))

    p = torch.nn.Parameter(torch.zeros(1 << 17))
    p.grad = torch.zeros(1 << 17)
    OwnNoise([p], 0.5, num_data=1, overlap_noise=True).step()
    assert float(p.detach().std()) == pytest.approx(2.0, rel=0.02)  # std 2 sqrt(2 * 0.5): not 1 + 1


def test_a_sampler_drawing_inside_update_gets_the_same_chain_overlapped():
    for a, b in zip(_inline_chain(InlineSGLD, False), _inline_chain(InlineSGLD, True)):
        assert torch.equal(a, b)
    # and it is SGLD: the same chain as the built-in one, to the bit
    for a, b in zip(_inline_chain(InlineSGLD, True), _inline_chain(sgmcmc.SGLD, True)):
        assert torch.equal(a, b)


def test_a_sampler_whose_declared_noise_differs_from_its_draw_is_told_so():
    class Wrong(InlineSGLD):
        def _noise_std(self, group):
            return 2 * super()._noise_std(group)

    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.zeros(4)
    with pytest.raises(RuntimeError, match="_noise_std declared"):
        Wrong([p], 0.1, num_data=1, overlap_noise=True).step()

    class Forgetful(InlineSGLD):
        def _noise_std(self, group):
            return self.noise_scale(group)

        def _update(self, group, params, grads):
            torch._foreach_add_(params, grads, alpha=-group["lr"])  # declares noise, never draws it

    with pytest.raises(RuntimeError, match="never drew"):
        Forgetful([p], 0.1, num_data=1, overlap_noise=True).step()


# ---------------------------------------------------------------------- hooks and the profiler
def _one_param_opt(cls=sgmcmc.SGLD):
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.ones(3)
    return cls([p], 0.1, num_data=10), p


def test_step_hooks_run_once_each_and_can_be_removed():
    opt, _ = _one_param_opt()
    calls = []
    pre = opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    post = opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.step()
    assert calls == ["pre", "post"]
    pre.remove()
    post.remove()
    opt.step()
    assert calls == ["pre", "post"] and opt._steps_done == 2


def test_global_optimizer_hooks_reach_samplers():
    from torch.optim.optimizer import register_optimizer_step_post_hook

    opt, _ = _one_param_opt()
    seen = []
    handle = register_optimizer_step_post_hook(lambda o, a, k: seen.append(type(o).__name__))
    try:
        opt.step()
    finally:
        handle.remove()
    opt.step()
    assert seen == ["SGLD"]


def test_a_subclass_overriding_step_runs_the_hooks_once():
    class Logged(sgmcmc.SGLD):
        def step(self, closure=None):
            return super().step(closure)

    opt, p = _one_param_opt(Logged)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    before = p.detach().clone()
    opt.step()
    assert calls == ["pre"] and not torch.equal(before, p)


def test_the_profiler_sees_the_optimizer_step_range():
    opt, _ = _one_param_opt()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    names = {e.name for e in prof.events()}
    assert "Optimizer.step#SGLD.step" in names


def test_step_leaves_grad_mode_as_it_found_it_and_runs_the_closure_with_grad():
    opt, p = _one_param_opt()
    seen = []

    def closure():
        seen.append(torch.is_grad_enabled())
        loss = (p * p).sum()
        p.grad = None
        loss.backward()
        return loss

    with torch.no_grad():
        opt.step(closure)
        assert not torch.is_grad_enabled()
    opt.step(closure)
    assert torch.is_grad_enabled() and seen == [True, True]


# ---------------------------------------------------------------------- cached buckets
def test_bucket_cache_follows_grads_appearing_disappearing_and_new_groups():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = sgmcmc.SGD([a], 1.0, num_data=1)
    a.grad = torch.ones(2)
    opt.step()
    a.grad = None
    opt.step()  # a skipped
    assert torch.equal(a.detach(), -torch.ones(2))
    a.grad = torch.ones(2)  # a new grad tensor (as after zero_grad(set_to_none=True))
    opt.step()
    opt.add_param_group({"params": [b], "lr": 2.0})
    b.grad = torch.ones(2)
    opt.step()
    assert torch.equal(a.detach(), -3 * torch.ones(2)) and torch.equal(b.detach(), -2 * torch.ones(2))
    a.grad.fill_(0.5)  # the same grad tensor, new values, read afresh
    opt.step()
    assert torch.equal(a.detach(), -3.5 * torch.ones(2))


def _forked_step(queue):
    p = torch.nn.Parameter(torch.zeros(1 << 10))
    p.grad = torch.zeros(1 << 10)
    sgmcmc.SGLD([p], 0.01, num_data=1, overlap_noise=True).step()
    queue.put(float(p.detach().abs().sum()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_the_noise_thread_is_rebuilt_in_a_forked_child():
    opt, _ = _one_param_opt()
    opt.overlap_noise = True
    opt.step()  # the parent's noise thread exists now
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_step, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) > 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_sampler_survives_deepcopy_and_pickle_and_continues_the_same_chain(name, how):
    import copy
    import pickle

    params = _params()
    opt = sgmcmc.get(name)(params, 0.01, num_data=50, generator=torch.Generator().manual_seed(4), check_finite=False)
    g = torch.Generator().manual_seed(8)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert twin.check_finite is False and twin._steps_done == 3
    twin_params = twin.param_groups[0]["params"]
    for _ in range(3):
        for p, q in zip(params, twin_params):
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            q.grad = p.grad.clone()
        opt.step()
        twin.step()
    for p, q in zip(params, twin_params):
        assert torch.equal(p.detach(), q.detach())


def test_the_noise_thread_leaves_the_thread_count_of_new_threads_alone():
    import threading

    sgmcmc.base._noise_worker()  # exists (started by an earlier test or now)
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [torch.get_num_threads()]


@pytest.mark.parametrize("name", ALL)
def test_the_bucket_cache_does_not_keep_a_dropped_gradient_alive(name):
    """After ``p.grad = None`` (zero_grad's default) the old gradient is freed at once: a sampler
    that kept it would hold a second copy of every gradient through the next backward."""
    import gc
    import weakref

    p = torch.nn.Parameter(torch.zeros(1000))
    opt = sgmcmc.get(name)([p], 0.01, num_data=10)
    for _ in range(2):  # the second step takes the cached path
        p.grad = torch.ones(1000)
        opt.step()
    ref = weakref.ref(p.grad)
    opt.zero_grad()
    gc.collect()
    assert ref() is None
    p.grad = torch.ones(1000)
    opt.step()  # and the cache follows the new gradient
    assert torch.isfinite(p.detach()).all()


def test_a_gradient_written_in_place_is_read_afresh_every_step():
    """The toy tasks' pattern: one gradient tensor, new values each step (the cached path)."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = sgmcmc.SGD([p], 1.0, num_data=1)
    p.grad = torch.zeros(3)
    for value in (1.0, 2.0, 3.0):
        p.grad.fill_(value)
        opt.step()
    assert torch.equal(p.detach(), -6.0 * torch.ones(3))


def test_bucket_cache_follows_a_parameter_changing_dtype():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    opt = sgmcmc.SGLD([a, b], 0.1, num_data=10, generator=torch.Generator().manual_seed(0))
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.step()
    b.data = b.data.double()  # now a bucket of its own
    b.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    assert b.dtype == torch.float64 and torch.isfinite(b.detach()).all() and not torch.equal(b.detach(), torch.zeros(2, dtype=torch.float64))


def test_bucket_cache_follows_a_parameter_changing_shape():
    """``p.data = ...`` of another shape: the noise is drawn for every new element, not broadcast."""
    q = torch.nn.Parameter(torch.zeros(1))
    opt = sgmcmc.SGLD([q], 0.1, num_data=10, generator=torch.Generator().manual_seed(0))
    q.grad = torch.zeros(1)
    opt.step()
    q.data = torch.zeros(5)
    q.grad = torch.zeros(5)
    opt.step()
    assert q.shape == (5,) and len(set(q.detach().tolist())) == 5


@pytest.mark.parametrize("name", NOISY)
@pytest.mark.parametrize("overlap", [False, True], ids=["inline", "overlapped"])
def test_a_refused_step_leaves_the_generator_as_it_was(name, overlap):
    """A NaN gradient refused by the worker of an overlapped step must not use up random numbers the
    in-line step never draws: after it the chain is the in-line chain, to the bit."""
    def chain(overlap):
        g = torch.Generator().manual_seed(3)
        shapes = [(300, 300), (200, 400)]  # two noise segments, both drawn while the worker checks
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
        gen = torch.Generator().manual_seed(1)
        opt = sgmcmc.get(name)(params, 1e-3, num_data=50, overlap_noise=overlap, generator=gen)
        for t in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g) + p.detach()
            if t == 2:
                params[1].grad[7, 7] = float("nan")
                state = gen.get_state()
                with pytest.raises(NonFiniteGradientError):
                    opt.step()
                assert torch.equal(gen.get_state(), state)
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g) + p.detach()
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(chain(False), chain(overlap)):
        assert torch.equal(a, b)


def test_psgld_refuses_a_gradient_whose_square_overflows_and_is_not_frozen_by_it():
    """|g| = 1e30 in float32: g^2 = inf would leave V = inf, G = 0 (no drift, no noise) for good."""
    p = torch.nn.Parameter(torch.zeros(12))
    opt = sgmcmc.get("psgld")([p], 1e-3, num_data=10, generator=torch.Generator().manual_seed(0))
    p.grad = torch.ones(12)
    opt.step()
    before, v_before = p.detach().clone(), opt.state[p]["square_avg"].clone()
    p.grad = torch.ones(12)
    p.grad[3] = 1e30
    with pytest.raises(NonFiniteGradientError, match="overflowed torch.float32 .* parameter 0"):
        opt.step()
    assert torch.equal(p.detach(), before) and torch.equal(opt.state[p]["square_avg"], v_before)
    p.grad = torch.full((12,), 1e19)  # squares fit float32, their sum (the witness) does not
    opt.step()
    assert torch.isfinite(opt.state[p]["square_avg"]).all() and not torch.equal(p.detach(), before)


def test_meta_parameters_step_with_the_finiteness_check_on():
    p = torch.nn.Parameter(torch.empty(4, device="meta"))
    opt = sgmcmc.SGLD([p], 0.1, num_data=10)
    p.grad = torch.empty(4, device="meta")
    opt.step()
    assert p.device.type == "meta"


# ---------------------------------------------------------------- noise streams (CPU block draws)
BLOCK = sgmcmc.base.NOISE_BLOCK_NUMEL


def _sgld_noise(numels, seed=1, threads=None, steps=1, **kw):
    """The noise an SGLD step adds (zero gradient, std sqrt(2 h T / N) = 1): h = 0.5, N = 1."""
    params = [torch.nn.Parameter(torch.zeros(n)) for n in numels]
    opt = sgmcmc.SGLD(params, 0.5, num_data=1, generator=torch.Generator().manual_seed(seed), **kw)
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        out = []
        for _ in range(steps):
            for p in params:
                p.grad = torch.zeros_like(p)
            start = torch.cat([p.detach().flatten() for p in params])
            opt.step()
            out.append(torch.cat([p.detach().flatten() for p in params]) - start)
    finally:
        torch.set_num_threads(before)
    return out, opt


def test_cpu_noise_is_drawn_in_blocks_each_from_its_own_stream_seeded_from_the_generator():
    # the documented contract, recomputed by hand: streams 1..k seeded from the generator (one
    # int64 randint each, in order), then block k of 2^16 values drawn from stream k
    n = 3 * BLOCK + 5
    (noise,), opt = _sgld_noise([n - 5, 5])
    parent = torch.Generator().manual_seed(1)
    streams = [parent] + [
        torch.Generator().manual_seed(int(torch.randint(0, 2**63 - 1, (), generator=parent, dtype=torch.int64)))
        for _ in range(3)
    ]
    expected = torch.empty(n)
    for k in range(4):
        expected[k * BLOCK:(k + 1) * BLOCK].normal_(generator=streams[k])
    assert torch.equal(noise, expected)
    assert len(opt._streams) == 3


def test_a_bucket_of_one_block_draws_exactly_from_the_generator():
    (noise,), opt = _sgld_noise([BLOCK - 10, 10])
    assert torch.equal(noise, torch.empty(BLOCK).normal_(generator=torch.Generator().manual_seed(1)))
    assert opt._streams == []


def test_block_noise_does_not_depend_on_the_thread_count():
    one, _ = _sgld_noise([5 * BLOCK + 77], threads=1, steps=3)
    two, _ = _sgld_noise([5 * BLOCK + 77], threads=2, steps=3)
    four, _ = _sgld_noise([5 * BLOCK + 77], threads=4, steps=3)
    for a, b, c in zip(one, two, four):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_block_noise_is_standard_normal_and_independent_across_blocks_and_steps():
    # 8 blocks x 2 steps of 2^16 values: each block's mean within 4 standard errors of 0 (4 / 256)
    # and its variance within 3 % of 1; blocks (and steps) uncorrelated within 4 / 256
    noise, _ = _sgld_noise([8 * BLOCK], seed=3, steps=2)
    blocks = torch.cat(noise).view(16, BLOCK).double()
    assert blocks.mean(1).abs().max() < 4 / 256
    assert (blocks.var(1) - 1).abs().max() < 0.03
    corr = torch.corrcoef(blocks)
    off = corr - torch.diag(torch.diag(corr))
    assert off.abs().max() < 4 / 256


def test_noise_streams_differ_between_samplers_sharing_the_global_generator():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(2 * BLOCK)) for _ in range(2)]
    opts = [sgmcmc.SGLD([p], 0.5, num_data=1) for p in params]
    for p, opt in zip(params, opts):
        p.grad = torch.zeros_like(p)
        opt.step()
    # each sampler seeds its own stream 1 from the global generator: the second blocks differ
    assert not torch.equal(params[0].detach()[BLOCK:], params[1].detach()[BLOCK:])


def test_a_bad_saved_noise_stream_state_is_refused_and_changes_nothing():
    _, opt = _sgld_noise([2 * BLOCK])
    sd = opt.state_dict()
    assert len(sd["noise_stream_states"]) == 1
    streams = [g.get_state() for g in opt._streams]
    sd["noise_stream_states"] = [torch.zeros(3, dtype=torch.uint8)]
    with pytest.raises(ValueError, match="noise_stream_states"):
        opt.load_state_dict(sd)
    assert [g.get_state() for g in opt._streams][0].equal(streams[0])


@pytest.mark.parametrize("name", NOISY)
def test_a_refused_overlapped_first_step_leaves_the_streams_unseeded(name):
    # in line, a NaN gradient is refused before any draw; overlapped, the draw has started: both
    # must leave every stream (and the seeding of new ones) as if the step never happened
    def chain(overlap):
        g = torch.Generator().manual_seed(2)
        params = [torch.nn.Parameter(torch.randn(3 * BLOCK, generator=g)), torch.nn.Parameter(torch.zeros(3))]
        opt = sgmcmc.get(name)(params, 1e-3, num_data=50, overlap_noise=overlap,
                               generator=torch.Generator().manual_seed(4))
        for p in params:
            p.grad = torch.ones_like(p)
        params[1].grad[0] = float("nan")
        with pytest.raises(NonFiniteGradientError):
            opt.step()
        assert opt._streams == []
        for t in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g) * 0.1 + p.detach()
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(chain(False), chain(True)):
        assert torch.equal(a, b)


def test_a_parallel_draw_waits_for_its_helpers_and_leaves_no_draw_running():
    draws = [(torch.empty(BLOCK), torch.Generator().manual_seed(k)) for k in range(6)]
    sgmcmc.base._BlockDraw(draws, 2.0)(helpers=3)
    for k, (flat, _g) in enumerate(draws):
        assert torch.equal(flat, torch.empty(BLOCK).normal_(0.0, 2.0, generator=torch.Generator().manual_seed(k)))
    assert sgmcmc.base._noise_worker().size >= 3
