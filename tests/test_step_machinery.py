"""``Sampler.step`` machinery: the noise drawn in blocks from parallel streams, the lean path around
torch.optim's hook/profiler wrapper, and the cached grouping of parameters.

Every test here can fail: chains are compared bit for bit, hooks are counted, the profiler's event
is looked for, and the thread count is read back.
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
BLOCK = sgmcmc._noise.NOISE_BLOCK_NUMEL


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    # two dtypes: two buckets, each with its own noise buffer and its own draw
    return [
        torch.nn.Parameter(torch.randn(7, 5, generator=g)),
        torch.nn.Parameter(torch.randn(11, generator=g, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(3, 3, generator=g)),
    ]


def _chain(name, steps=30, generator=True, seed=7, threads=None):
    params = _params()
    kw = {"generator": torch.Generator().manual_seed(seed)} if generator else {}
    opt = sgmcmc.get(name)(params, 0.01, num_data=50, **kw)
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


@pytest.mark.parametrize("name", NOISY)
@pytest.mark.parametrize("generator", [True, False], ids=["explicit-generator", "global-generator"])
def test_the_chain_depends_on_the_seed_and_only_on_it(name, generator):
    a, b = _chain(name, generator=generator), _chain(name, generator=generator)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], _chain(name, generator=generator, seed=8)[0])


@pytest.mark.parametrize("name", NOISY)
def test_a_parallel_draw_restores_the_thread_count_and_a_refused_step_changes_nothing(name):
    threads = torch.get_num_threads()
    params = [torch.nn.Parameter(torch.zeros(3 * BLOCK)), torch.nn.Parameter(torch.zeros(5))]
    opt = sgmcmc.get(name)(params, 0.01, num_data=50)
    for p in params:
        p.grad = torch.ones_like(p)
    try:
        torch.set_num_threads(2)
        opt.step()  # three blocks, drawn by this thread and a pool thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    params[1].grad[3] = float("nan")
    before = [p.detach().clone() for p in params]
    with pytest.raises(NonFiniteGradientError):
        opt.step()
    assert all(torch.equal(b, p) for b, p in zip(before, params))


def test_overlap_noise_is_refused_as_removed():
    with pytest.raises(TypeError, match="overlap_noise= is no longer accepted: it was removed"):
        sgmcmc.SGLD([torch.nn.Parameter(torch.zeros(2))], 0.1, num_data=1, overlap_noise=False)


@pytest.mark.parametrize("method", ["_update_noise", "_noise_std"])
def test_a_sampler_defining_a_removed_split_update_method_is_refused(method):
    """Nothing calls ``_update_noise`` any more: a sampler relying on it would silently lose its noise."""
    with pytest.raises(TypeError, match=f"defines {method}, which sgmcmc no longer calls"):
        type("Split", (sgmcmc.SGLD,), {method: lambda self, *a: None})


class InlineSGLD(sgmcmc.Sampler):
    """SGLD written the simple way: the drift, then the noise drawn with ``_noise``."""

    def _update(self, group, params, grads):
        torch._foreach_add_(params, grads, alpha=-group["lr"])
        torch._foreach_add_(params, self._noise(params, std=self.noise_scale(group)))


def _inline_chain(cls, steps=20, big=False):
    params = _params() + ([torch.nn.Parameter(torch.zeros(2 * BLOCK + 3))] if big else [])
    opt = cls(params, 0.01, num_data=50, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(99)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
    return [p.detach().clone() for p in params]


def test_a_subclass_overriding_update_draws_its_own_noise():
    class OwnNoise(sgmcmc.SGLD):  # draws at twice the scale
        def _update(self, group, params, grads):
            torch._foreach_add_(params, self._noise(params, std=2 * self.noise_scale(group)))

    p = torch.nn.Parameter(torch.zeros(1 << 17))
    p.grad = torch.zeros(1 << 17)
    OwnNoise([p], 0.5, num_data=1).step()
    assert float(p.detach().std()) == pytest.approx(2.0, rel=0.02)  # std 2 sqrt(2 * 0.5): not 1 + 1


@pytest.mark.parametrize("big", [False, True], ids=["one-block", "several-streams"])
def test_a_sampler_drawing_inside_update_is_the_builtin_sgld_to_the_bit(big):
    for a, b in zip(_inline_chain(InlineSGLD, big=big), _inline_chain(sgmcmc.SGLD, big=big)):
        assert torch.equal(a, b)


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


def _forked_draw(queue):
    # the sampler's draw alone, and no intra-op parallel op (a fill, the drift, a sum over 3 blocks):
    # one could hang in a child forked from a parent whose OpenMP team exists (libgomp), which is not
    # what this test is about
    import os

    p = torch.nn.Parameter(torch.empty(3 * BLOCK))
    opt = sgmcmc.SGLD([p], 0.01, num_data=1, generator=torch.Generator().manual_seed(0))
    (noise,) = opt._noise([p], 1.0)
    pool = sgmcmc._noise._POOL
    queue.put((float(noise[-100:].abs().sum()),
               torch.get_num_threads() < 2 or (pool is not None and pool.pid == os.getpid())))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_the_draw_pool_is_rebuilt_in_a_forked_child():
    (noise,), _ = _sgld_noise([3 * BLOCK], threads=2)  # the parent's pool threads exist now
    assert float(noise.abs().sum()) > 0 and sgmcmc._noise.draw_pool().size >= 1
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_draw, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    total, own_pool = queue.get(timeout=5)
    assert total > 0 and own_pool


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

    sgmcmc._noise.draw_pool()  # exists (started by an earlier test or now)
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
def test_a_refused_step_leaves_the_generator_as_it_was(name):
    """A NaN gradient is refused before any draw: after it the chain is the chain without it, to the bit."""
    def chain(refuse):
        g = torch.Generator().manual_seed(3)
        shapes = [(300, 300), (200, 400)]  # several noise blocks and streams
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
        gen = torch.Generator().manual_seed(1)
        opt = sgmcmc.get(name)(params, 1e-3, num_data=50, generator=gen)
        for t in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g) + p.detach()
            if t == 2:
                if refuse:
                    params[1].grad[7, 7] = float("nan")
                    state = gen.get_state()
                    with pytest.raises(NonFiniteGradientError):
                        opt.step()
                    assert torch.equal(gen.get_state(), state)
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g) + p.detach()
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(chain(False), chain(True)):
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
def test_a_refused_first_step_leaves_the_streams_unseeded(name):
    # a NaN gradient is refused before any draw: every stream (and the seeding of new ones) is left
    # as if the step never happened
    def chain(refuse):
        g = torch.Generator().manual_seed(2)
        params = [torch.nn.Parameter(torch.randn(3 * BLOCK, generator=g)), torch.nn.Parameter(torch.zeros(3))]
        opt = sgmcmc.get(name)(params, 1e-3, num_data=50, generator=torch.Generator().manual_seed(4))
        if refuse:
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
    sgmcmc._noise.BlockDraw(draws, 2.0)(helpers=3)
    for k, (flat, _g) in enumerate(draws):
        assert torch.equal(flat, torch.empty(BLOCK).normal_(0.0, 2.0, generator=torch.Generator().manual_seed(k)))
    assert sgmcmc._noise.draw_pool().size >= 3
