"""The exact checks: the sampler behaves as a ``torch.optim`` optimizer and keeps the contract's
promises bit for bit (seeds, resume, copies, schedulers, param groups, refused gradients and
hyperparameters) on a toy quadratic, in milliseconds."""

from __future__ import annotations

import copy
import io
import math
from typing import Any

import torch

from ..base import HyperparameterError, NonFiniteGradientError
from .core import CheckFailed, _check, _other_value
from .problems import _TOY_LR, _TOY_N, _advance, _build, _first_diff, _same, _snapshot, _toy_grads, _toy_params, _trajectory

__all__ = ["check_temperature_zero", "check_reproducible", "check_state_dict_resume", "check_optimizer_api",
           "check_lr_schedulers", "check_param_groups", "check_independent_noise", "check_noise_dtype",
           "check_copy_and_pickle", "check_grad_none_skipped", "check_nonfinite_gradient",
           "check_hyperparameter_validation"]


@_check("temperature_zero")
def check_temperature_zero(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """At T = 0 the trajectory does not depend on the seed (sgd: on neither seed nor T)."""
    runs = {}
    temps = (0.0,) if cls.uses_noise else (0.0, 1.0, 0.5)
    for temp in temps:
        for seed in (1, 2):
            torch.manual_seed(seed)
            runs[(temp, seed)] = _trajectory(cls, hyper, opt_kwargs={"temperature": temp,
                                                                    "generator": torch.Generator().manual_seed(seed)})
    ref = runs[(0.0, 1)]
    for key, traj in runs.items():
        if not _same(ref, traj):
            raise CheckFailed(f"temperature_zero: at T={key[0]} with seed {key[1]} the trajectory differs from "
                              f"T=0, seed 1 ({_first_diff(ref, traj)}); the noise must scale with T"
                              + ("" if cls.uses_noise else " and a sampler without noise must ignore T and the seed"))
    moved = float((ref[-1] - torch.cat([p.detach().reshape(-1) for p in _toy_params()])).abs().max())
    if moved == 0.0:
        raise CheckFailed("temperature_zero: the parameters did not move at all")
    return {"temperatures": list(temps), "max_move": moved}


@_check("reproducible")
def check_reproducible(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Same seed, same trajectory: global generator, and explicit generator= (then global-seed free)."""
    def global_run(seed):
        torch.manual_seed(seed)
        return _trajectory(cls, hyper)

    a, b = global_run(123), global_run(123)
    if not _same(a, b):
        raise CheckFailed(f"reproducible: torch.manual_seed(123) twice gave different trajectories ({_first_diff(a, b)})")
    c = global_run(124)
    if cls.uses_noise and _same(a, c):
        raise CheckFailed("reproducible: seeds 123 and 124 gave the same trajectory: the noise ignores the global generator")

    def explicit_run(gseed, global_seed):
        torch.manual_seed(global_seed)
        return _trajectory(cls, hyper, opt_kwargs={"generator": torch.Generator().manual_seed(gseed)})

    e1, e2, e3 = explicit_run(7, 1), explicit_run(7, 2), explicit_run(8, 1)
    if not _same(e1, e2):
        raise CheckFailed(f"reproducible: with generator= seeded alike but different global seeds the trajectories "
                          f"differ ({_first_diff(e1, e2)}); the noise must come from the given generator")
    if cls.uses_noise and _same(e1, e3):
        raise CheckFailed("reproducible: generators seeded 7 and 8 gave the same trajectory: the noise ignores generator=")
    return {"steps": len(a)}


@_check("state_dict_resume")
def check_state_dict_resume(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """state_dict() mid-chain, loaded into a fresh sampler, continues the chain bit for bit (with generator=,
    with the global generator, and on a bucket large enough to be drawn from several noise streams)."""
    total, half = 10, 5
    out = {}
    for mode in ("explicit", "global", "streams"):
        big = mode == "streams"

        def generator_kw(seed):
            return {"generator": torch.Generator().manual_seed(seed)} if mode != "global" else {}

        def make(params, seed):
            return _build(cls, params, hyper, **generator_kw(seed))

        torch.manual_seed(11)
        straight = _trajectory(cls, hyper, total, params=_toy_params(big=big), opt_kwargs=generator_kw(5))

        torch.manual_seed(11)
        params = _toy_params(big=big)
        opt = make(params, 5)
        resumed = _advance(opt, params, half)
        buf = io.BytesIO()
        torch.save({"sampler": opt.state_dict(), "params": [p.detach().clone() for p in params],
                    "rng": torch.get_rng_state()}, buf)
        # keep the old chain running a little: the checkpoint must be a snapshot, not a live view
        _toy_grads(params)
        opt.step()
        buf.seek(0)
        ckpt = torch.load(buf, weights_only=True)
        fresh = [torch.nn.Parameter(t.clone()) for t in ckpt["params"]]
        opt2 = make(fresh, 999)  # a different seed: the state dict must restore it
        opt2.load_state_dict(ckpt["sampler"])
        torch.manual_seed(4242)  # scramble the global generator, then restore it as a caller would
        if mode == "global":
            torch.set_rng_state(ckpt["rng"])
        resumed += _advance(opt2, fresh, total - half)
        if not _same(straight, resumed):
            raise CheckFailed(f"state_dict_resume ({mode} generator): the resumed chain differs from the straight one "
                              f"({_first_diff(straight, resumed)})", {"mode": mode})
        out[f"resumed_{mode}"] = True
    sd = _build(cls, _toy_params(), hyper, generator=torch.Generator().manual_seed(1)).state_dict()
    if "generator_state" not in sd and cls.uses_noise:
        raise CheckFailed("state_dict_resume: state_dict() of a sampler with generator= lacks 'generator_state'")
    return out


@_check("optimizer_api")
def check_optimizer_api(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """step() leaves p.grad alone; zero_grad (to None and to zeros), step(closure) returns the loss, hypers in param_groups."""
    params = _toy_params()
    opt = _build(cls, params, hyper)
    _toy_grads(params)
    grads = [p.grad.clone() for p in params]
    opt.step()
    changed = [i for i, (p, g) in enumerate(zip(params, grads)) if not torch.equal(p.grad, g)]
    if changed:
        raise CheckFailed(f"optimizer_api: step() changed p.grad of parameter(s) {changed}; a sampler must only read "
                          f"the gradients (a caller may log or clip them after the step)")
    opt.zero_grad()
    if any(p.grad is not None for p in params):
        raise CheckFailed("optimizer_api: zero_grad() left gradients that are not None")
    _toy_grads(params)
    opt.zero_grad(set_to_none=False)
    if any(p.grad is None or bool(p.grad.ne(0).any()) for p in params):
        raise CheckFailed("optimizer_api: zero_grad(set_to_none=False) did not zero the gradients")
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = sum(((p - 0.5) ** 2).sum() for p in params)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in params]
    loss = opt.step(closure)
    if not calls or not calls[0]:
        raise CheckFailed("optimizer_api: step(closure) did not call the closure with gradients enabled")
    if not isinstance(loss, torch.Tensor):
        raise CheckFailed(f"optimizer_api: step(closure) returned {loss!r}, not the closure's loss")
    if all(torch.equal(b, p) for b, p in zip(before, params)):
        raise CheckFailed("optimizer_api: step(closure) did not move the parameters")
    group = opt.param_groups[0]
    missing = [k for k in ("lr", "num_data", "temperature", *hyper) if k not in group]
    if missing:
        raise CheckFailed(f"optimizer_api: param_groups[0] lacks {missing}")
    wrong = {k: (group[k], v) for k, v in hyper.items() if group[k] != v}
    if wrong:
        raise CheckFailed(f"optimizer_api: param_groups[0] holds {wrong} (got, passed)")
    return {"hypers_in_group": sorted(k for k in group if k != "params")}


@_check("lr_schedulers")
def check_lr_schedulers(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """LambdaLR a*(b+t)^-gamma and CosineAnnealingWarmRestarts change the group lr and the sampler uses it."""
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LambdaLR

    b, gamma = 3.0, 0.55
    schedulers = {
        # lr_t = a (b + t)^-gamma with a = lr0 b^gamma, so that lr_0 = lr0
        "LambdaLR(a*(b+t)^-gamma)": lambda opt: LambdaLR(opt, lambda t: (b / (b + t)) ** gamma),
        "CosineAnnealingWarmRestarts(T_0=4)": lambda opt: CosineAnnealingWarmRestarts(opt, T_0=4, eta_min=1e-4),
    }
    out = {}
    steps = 12
    for label, make in schedulers.items():
        torch.manual_seed(3)
        params = _toy_params()
        opt = _build(cls, params, hyper)
        sched = make(opt)
        lrs, scheduled = [], []
        for t in range(steps):
            _toy_grads(params)
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            scheduled.append(_snapshot(params))
        if len(set(lrs)) < 3:
            raise CheckFailed(f"lr_schedulers: {label} did not change the group lr (saw {lrs})")

        def by_hand(o, t):
            for g in o.param_groups:
                g["lr"] = lrs[t]

        torch.manual_seed(3)
        manual = _trajectory(cls, hyper, steps=steps, before_step=by_hand)
        torch.manual_seed(3)
        constant = _trajectory(cls, hyper, steps=steps)
        if not _same(scheduled, manual):
            raise CheckFailed(f"lr_schedulers: {label}: the scheduled run differs from one with the same lr set by hand "
                              f"({_first_diff(scheduled, manual)})", {"lrs": lrs})
        if _same(scheduled, constant):
            raise CheckFailed(f"lr_schedulers: {label}: the scheduled run equals the constant-lr run: the sampler "
                              f"ignores param_groups[i]['lr']", {"lrs": lrs})
        out[f"{label} first lrs"] = [round(x, 6) for x in lrs[:6]]
    # an lr changed by hand mid-chain must act as it does in a fresh sampler resumed at that point
    # (a sampler that caches anything derived from lr, e.g. its noise scale, at its first step fails)
    gen = torch.Generator().manual_seed(21)
    params = _toy_params()
    opt = _build(cls, params, hyper, generator=gen)
    _advance(opt, params, 3)
    checkpoint = copy.deepcopy(opt.state_dict())
    saved = [p.detach().clone() for p in params]
    low = 0.25 * opt.param_groups[0]["lr"]

    def steps_at(o, ps) -> list[torch.Tensor]:
        for g in o.param_groups:
            g["lr"] = low
        return _advance(o, ps, 3)

    went_on = steps_at(opt, params)
    fresh = [torch.nn.Parameter(t) for t in saved]
    opt2 = _build(cls, fresh, hyper, lr=low, generator=torch.Generator().manual_seed(99))
    opt2.load_state_dict(checkpoint)
    resumed = steps_at(opt2, fresh)
    if not _same(went_on, resumed):
        raise CheckFailed(f"lr_schedulers: after lr was lowered by hand mid-chain the chain differs from a fresh "
                          f"sampler resumed there at the new lr ({_first_diff(went_on, resumed)}): something derived "
                          f"from lr (the noise scale?) was kept from an earlier step")
    return out
@_check("param_groups")
def check_param_groups(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Every hyperparameter is read per param group: a group that overrides them steps exactly as a sampler
    built with them; every group's parameters move."""
    own = cls.hypers
    base = {k: hyper.get(k, spec.default) for k, spec in own.items()}
    other = {k: _other_value(spec, base[k]) for k, spec in own.items()}
    other = {k: v for k, v in other.items() if v is not None}
    over = {"lr": 0.5 * _TOY_LR, **({"temperature": 0.5} if cls.uses_noise else {}), **other}

    def run(groups, lr_, temperature, own_hyper):
        params = _toy_params()
        gs = [{"params": params[:2], **groups[0]}, {"params": params[2:], **groups[1]}]
        opt = cls(gs, lr_, num_data=_TOY_N, temperature=temperature, generator=torch.Generator().manual_seed(13),
                  **own_hyper)
        start = [p.detach().clone() for p in params]
        traj = _advance(opt, params, 6)
        still = [i for i, (a, p) in enumerate(zip(start, params)) if torch.equal(a, p)]
        if still:
            raise CheckFailed(f"param_groups: parameter(s) {still} (of two groups) never moved in 6 steps: "
                              f"every param group must be updated")
        return traj

    plain = {"lr": _TOY_LR, "temperature": 1.0, **base}
    a = run([{}, over], _TOY_LR, 1.0, base)  # group 2 overrides
    b = run([plain, {}], over["lr"], over.get("temperature", 1.0), {**base, **other})  # group 1 overrides back
    if not _same(a, b):
        raise CheckFailed(f"param_groups: a group overriding {sorted(over)} does not step as a sampler built with "
                          f"those values ({_first_diff(a, b)}): some hyperparameter is read from the defaults, not "
                          f"from the group", {"overridden": over})
    return {"overridden": over}


#: independent_noise: fresh samplers (one per seed) whose displacements are correlated
_NOISE_REPLICATES = 400
#: |r| of two independent coordinates over n replicates is below this many 1 / sqrt(n) (the null sd)
_NOISE_CORR_SDS = 5.0
#: the parameters of a replicate: (group, shape); the first two share a group
_NOISE_SHAPES = ((0, (5,)), (0, (7,)), (1, (3,)))


def _noise_displacements(cls, hyper, replicates: int, steps: int = 2) -> torch.Tensor:
    """[replicates, values]: each replicate a fresh sampler (its own generator= seed) on
    three small parameters at 0, two in one group and one in a second, stepped ``steps`` times with a
    fixed gradient (the same in every replicate); the parameters' values afterwards. A sampler that
    moves each coordinate by its own noise (momentum included: from rest, the displacement is linear in
    that coordinate's draws) gives independent columns."""
    rows = torch.empty(replicates, sum(math.prod(shape) for _, shape in _NOISE_SHAPES), dtype=torch.float64)
    torch.manual_seed(20_000)  # for samplers that draw from the global generator
    for r in range(replicates):
        params = [torch.nn.Parameter(torch.zeros(shape)) for _, shape in _NOISE_SHAPES]
        groups = [{"params": [p for (g, _), p in zip(_NOISE_SHAPES, params) if g == k]} for k in (0, 1)]
        opt = _build(cls, groups, hyper, generator=torch.Generator().manual_seed(r))
        for _ in range(steps):
            for p in params:
                p.grad = torch.full_like(p, 0.5)
            opt.step()
        rows[r] = _snapshot(params).to(torch.float64)
    return rows


@_check("independent_noise", applies=lambda cls: bool(cls.uses_noise))
def check_independent_noise(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Each parameter draws its own noise: twins (equal start, equal gradients) part ways, and over 400
    fresh samplers no coordinate's displacement correlates with one of another parameter (|r| < 5 /
    sqrt(400)), in one group and across groups."""
    def twins(groups):
        a, b, c = (torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(3))
        params = [a, b, c] if groups == 1 else [{"params": [a, b]}, {"params": [c]}]
        opt = _build(cls, params, hyper, generator=torch.Generator().manual_seed(8))
        for _ in range(3):
            for p in (a, b, c):
                p.grad = p.detach() - 0.3
            opt.step()
        return a, b, c

    for groups in (1, 2):
        a, b, c = twins(groups)
        same = [name for name, (x, y) in (("a, b", (a, b)), ("a, c", (a, c)), ("b, c", (b, c))) if torch.equal(x, y)]
        if same:
            raise CheckFailed(f"independent_noise: parameters {', '.join(same)} started equal, saw equal gradients and are "
                              f"still equal after 3 steps ({groups} group(s)): they drew the same noise")
    n = _NOISE_REPLICATES
    rows = _noise_displacements(cls, hyper, n)
    owner = torch.cat([torch.full((math.prod(shape),), k) for k, (_, shape) in enumerate(_NOISE_SHAPES)])
    local = torch.cat([torch.arange(math.prod(shape)) for _, shape in _NOISE_SHAPES])
    sd = rows.std(0)
    if bool((sd == 0).any()):
        i = int((sd == 0).nonzero()[0])
        raise CheckFailed(f"independent_noise: value {int(local[i])} of parameter {int(owner[i])} moved alike for every "
                          f"seed of generator= and every state of the global generator: its noise ignores both")
    z = (rows - rows.mean(0)) / sd
    corr = z.T @ z / (n - 1)
    cross = owner[:, None] != owner[None, :]
    r = corr.abs().where(cross, torch.zeros_like(corr))
    worst = float(r.max())
    bound = _NOISE_CORR_SDS / math.sqrt(n)
    out = {"replicates": n, "max_abs_corr": worst, "bound": bound}
    if worst >= bound:
        i, j = divmod(int(r.argmax()), r.shape[1])
        pi, pj = int(owner[i]), int(owner[j])
        where = "in one group" if _NOISE_SHAPES[pi][0] == _NOISE_SHAPES[pj][0] else "across two groups"
        raise CheckFailed(f"independent_noise: the displacements of value {int(local[i])} of parameter {pi} and value "
                          f"{int(local[j])} of parameter {pj} ({where}) are correlated, r = {float(corr[i, j]):+.3f} over {n} "
                          f"seeds (limit |r| < {bound:.3f}, {_NOISE_CORR_SDS:g} / sqrt({n})): the parameters' noise "
                          f"must be drawn independently, not from overlapping parts of one draw", out)
    return out


@_check("noise_dtype", applies=lambda cls: bool(cls.uses_noise))
def check_noise_dtype(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """The noise is drawn in the parameters' own dtype (float64 parameters get float64 draws, float32 ones
    float32): every random op a step runs makes tensors of the dtype of the parameters it serves."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RandomOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[tuple[str, torch.dtype]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if torch.Tag.nondeterministic_seeded in getattr(func, "tags", ()):
                for t in (out if isinstance(out, (list, tuple)) else [out]):
                    if isinstance(t, torch.Tensor):
                        self.seen.append((str(func.overloadpacket.__name__), t.dtype))
            return out

    out = {}
    for dtype in (torch.float64, torch.float32):
        params = _toy_params(dtype=dtype)
        opt = _build(cls, params, hyper, generator=torch.Generator().manual_seed(2))
        _toy_grads(params)
        with RandomOps() as mode:
            opt.step()
        if not mode.seen:
            raise CheckFailed(f"noise_dtype: a step on {dtype} parameters ran no random op torch knows of")
        wrong = sorted({f"{name} -> {d}" for name, d in mode.seen if d != dtype})
        if wrong:
            raise CheckFailed(f"noise_dtype: a step on {dtype} parameters drew {', '.join(wrong)}: draw the noise "
                              f"in the parameters' dtype (float32 draws upcast lose precision; float64 draws "
                              f"cost twice and are rounded away)")
        out[str(dtype).replace("torch.", "")] = sorted({name for name, _ in mode.seen})
    return out


@_check("copy_and_pickle")
def check_copy_and_pickle(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """deepcopy / pickle mid-chain continue the chain bit for bit (on parameters large enough to be drawn
    from several noise streams)."""
    import pickle

    def grads_for(params, t):
        g = torch.Generator().manual_seed(1000 + t)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1 + p.detach()

    def chain(copy_at=None, how=None, steps=4):
        g = torch.Generator().manual_seed(5)
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((300, 250), (17,), (200, 400), (5,))]
        opt = _build(cls, params, hyper, lr=1e-3, generator=torch.Generator().manual_seed(3))
        out = []
        for t in range(steps):
            if t == copy_at:
                opt = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
                params = [p for group in opt.param_groups for p in group["params"]]
            grads_for(params, t)
            opt.step()
            out.append(_snapshot(params))
        return out

    ref = chain()
    for how in ("deepcopy", "pickle"):
        other = chain(copy_at=2, how=how)
        if not _same(ref, other):
            raise CheckFailed(f"copy_and_pickle: a {how} taken mid-chain does not continue the chain "
                              f"({_first_diff(ref, other)}): keep every piece of the chain in self.state / "
                              f"param_groups (or implement __getstate__)")
    return {"values": int(ref[0].numel())}


@_check("grad_none_skipped")
def check_grad_none_skipped(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """A parameter whose grad is None is left unchanged; the others move."""
    params = _toy_params()
    opt = _build(cls, params, hyper)
    start = [p.detach().clone() for p in params]
    for t in range(3):
        _toy_grads(params)
        params[1].grad = None
        before = [p.detach().clone() for p in params]
        opt.step()
        if not torch.equal(before[1], params[1]):
            raise CheckFailed(f"grad_none_skipped: the parameter with grad None changed at step {t}")
    # (over the three steps: a sampler may move a position only from its second step, e.g. after a velocity)
    if torch.equal(start[0], params[0]) or torch.equal(start[2], params[2]):
        raise CheckFailed("grad_none_skipped: a parameter with a gradient did not move in three steps")
    # a parameter that had a gradient before (and so has state) and then has none
    _toy_grads(params)
    opt.step()
    _toy_grads(params)
    params[0].grad = None
    before = params[0].detach().clone()
    opt.step()
    if not torch.equal(before, params[0]):
        raise CheckFailed("grad_none_skipped: a parameter with state but grad None changed")
    return {}


def _state_snapshot(opt) -> list:
    snap = []
    for p, st in opt.state.items():
        for k, v in sorted(st.items()):
            snap.append((k, v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)))
    return snap


def _same_state(a, b) -> bool:
    if len(a) != len(b):
        return False
    for (ka, va), (kb, vb) in zip(a, b):
        if ka != kb:
            return False
        if isinstance(va, torch.Tensor):
            if not (isinstance(vb, torch.Tensor) and torch.equal(va, vb)):
                return False
        elif va != vb:
            return False
    return True


@_check("nonfinite_gradient")
def check_nonfinite_gradient(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """NaN / Inf gradients raise NonFiniteGradientError before anything changes (parameters, state, the
    generator; in one group and in the second of two); huge finite ones do not."""
    tried = 0
    for bad in (float("nan"), float("inf"), float("-inf")):
        for where in ("last param", "second group"):
            params = _toy_params()
            gen = torch.Generator().manual_seed(0)
            groups = [{"params": params[:2]}, {"params": params[2:]}] if where == "second group" else params
            opt = _build(cls, groups, hyper, generator=gen)
            for _ in range(2):  # build up state (momentum, V, pending half kick)
                _toy_grads(params)
                opt.step()
            _toy_grads(params)
            params[2].grad[0, 1, 0] = bad
            before = [p.detach().clone() for p in params]
            state_before = _state_snapshot(opt)
            gen_before = gen.get_state()
            try:
                opt.step()
            except NonFiniteGradientError:
                pass
            else:
                raise CheckFailed(f"nonfinite_gradient: a {bad} gradient in the {where} did not raise NonFiniteGradientError")
            if not all(torch.equal(b, p) for b, p in zip(before, params)):
                raise CheckFailed(f"nonfinite_gradient: parameters changed before NonFiniteGradientError ({bad}, {where})")
            if not _same_state(state_before, _state_snapshot(opt)):
                raise CheckFailed(f"nonfinite_gradient: the sampler state changed before NonFiniteGradientError ({bad}, {where})")
            if not torch.equal(gen_before, gen.get_state()):
                raise CheckFailed(f"nonfinite_gradient: the refused step used up random numbers ({bad}, {where}): "
                                  f"the chain after it is not the chain without it")
            _toy_grads(params)
            opt.step()  # the chain can go on once the gradient is finite again
            tried += 1
    params = _toy_params()
    opt = _build(cls, params, hyper)
    _toy_grads(params)
    # every value and its square fit float32, but sums of squares (norms, psgld's V) overflow
    params[0].grad.fill_(1e19)
    try:
        opt.step()
    except NonFiniteGradientError as exc:
        raise CheckFailed(f"nonfinite_gradient: a finite gradient of 1e19 raised NonFiniteGradientError: {exc}") from None
    params = _toy_params()
    opt = _build(cls, params, hyper, check_finite=False)
    _toy_grads(params)
    params[0].grad[0, 0] = float("nan")
    try:
        opt.step()
    except NonFiniteGradientError:
        raise CheckFailed("nonfinite_gradient: check_finite=False still raised NonFiniteGradientError") from None
    return {"cases": tried}


def _out_of_range(spec) -> list[Any]:
    vals: list[Any] = [float("nan")]
    if spec.low is not None:
        vals.append(spec.low if spec.low_open else spec.low - max(1.0, abs(spec.low)))
    else:
        vals.append(float("-inf"))
    if spec.high is not None:
        vals.append(spec.high if spec.high_open else spec.high + max(0.5, abs(spec.high)))
    else:
        vals.append(float("inf"))
    if spec.integer:
        lo = spec.low if spec.low is not None else 0
        vals.append(lo + 1.5)
    return vals


@_check("hyperparameter_validation")
def check_hyperparameter_validation(cls, *, lr=None, protocol=None, **hyper) -> dict:
    """Out-of-range hyperparameters and unknown keywords raise HyperparameterError naming name, value, range."""
    good = {"lr": 0.01, "num_data": _TOY_N, "temperature": 1.0, **hyper}
    cases = []
    for name, spec in cls.all_hypers().items():
        for value in _out_of_range(spec):
            cases.append((name, value, spec.describe()))
    cases.append(("temperature", -0.5, None))
    cases.append(("lr", 0.0, None))
    cases.append(("lr", -1e-3, None))
    cases.append(("num_data", 0, None))
    cases.append(("num_data", 2.5, None))
    failures = []
    for name, value, valid in cases:
        kwargs = dict(good)
        kwargs[name] = value
        lr_value = kwargs.pop("lr")
        try:
            cls(_toy_params(), lr_value, **kwargs)
        except HyperparameterError as exc:
            msg = str(exc)
            valid = valid or cls.all_hypers()[name].describe()
            missing = [what for what, text in (("name", name), ("value", repr(value)), ("range", valid)) if text not in msg]
            if missing:
                failures.append(f"{name}={value!r}: message {msg!r} lacks the {'/'.join(missing)}")
        except Exception as exc:
            failures.append(f"{name}={value!r} raised {type(exc).__name__} ({exc}), not HyperparameterError")
        else:
            failures.append(f"{name}={value!r} was accepted")
    # unknown keyword
    try:
        cls(_toy_params(), 0.01, num_data=_TOY_N, not_a_hyperparameter=3, **hyper)
    except HyperparameterError as exc:
        msg = str(exc)
        if "not_a_hyperparameter" not in msg or "3" not in msg or "lr" not in msg:
            failures.append(f"unknown keyword: message {msg!r} should name it, its value and the valid names")
    except Exception as exc:
        failures.append(f"unknown keyword raised {type(exc).__name__}, not HyperparameterError")
    else:
        failures.append("an unknown keyword was accepted")
    # a bad value in a param group added later is refused, and the group is not kept
    opt = cls(_toy_params(), 0.01, num_data=_TOY_N, **hyper)
    try:
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": -1.0})
    except HyperparameterError:
        if len(opt.param_groups) != 1:
            failures.append("add_param_group refused lr=-1.0 but kept the group")
    else:
        failures.append("add_param_group accepted lr=-1.0")
    # every value a sampler accepts must step: probes at and around each own hyperparameter's edges
    for name, spec in cls.hypers.items():
        probes = {0.0, -0.05, 1e-6, 1e6, *(v for v in (spec.low, spec.high) if v is not None)}
        for value in sorted(probes):
            kwargs = {**hyper, name: int(value) if spec.integer else value}
            try:
                opt = cls(_toy_params(), 0.01, num_data=_TOY_N, **kwargs)
            except HyperparameterError:
                continue
            params = [p for group in opt.param_groups for p in group["params"]]
            try:
                for _ in range(20):
                    _toy_grads(params)
                    opt.step()
            except NonFiniteGradientError:
                pass  # a value that makes the chain diverge may be valid; one that crashes it is not
            except Exception as exc:
                failures.append(f"{name}={value!r} was accepted but step() raised {type(exc).__name__} ({exc}); "
                                f"declare the valid range in hypers (now {spec.describe()})")
    if failures:
        raise CheckFailed(f"hyperparameter_validation: {len(failures)} problem(s): " + "; ".join(failures),
                          {"cases": len(cases) + 2, "failures": len(failures)})
    return {"cases": len(cases) + 2}
