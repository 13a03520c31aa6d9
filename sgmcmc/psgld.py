"""``psgld`` (Li, Chen, Carlson & Carin 2016): RMSprop-preconditioned SGLD.

    V <- alpha V + (1 - alpha) g * g          (V starts at g_0 * g_0 on the first step)
    G <- 1 / (eps + sqrt(V))
    theta <- theta - h G g + sqrt(2 h T G / N) xi

The Gamma(theta) correction term is omitted, as Li et al. do: the chain targets exp(-U / T) only
where G varies slowly against its own mixing (alpha near 1, or V dominated by minibatch noise).
Starting V at g_0^2 rather than 0 avoids the huge first steps that V = 0 gives with alpha near 1.
A finite gradient whose square overflows the dtype (|g| > 1.8e19 in float32) would make V infinite
and freeze the chain for good (G = 0), so that step is refused like a NaN gradient.
"""

import torch

from .base import Hyper, Sampler
from .registry import register


@register("psgld")
class PSGLD(Sampler):
    """Preconditioned SGLD with an RMSprop diagonal preconditioner (no Gamma correction)."""

    hypers = {
        "alpha": Hyper(0.99, low=0.0, high=1.0, high_open=True, doc="decay of the squared-gradient average V"),
        "eps": Hyper(1e-5, low=0.0, low_open=True, doc="lambda in G = 1 / (lambda + sqrt(V))"),
    }

    def _init_transient(self):
        super()._init_transient()
        self._flat_cache: dict[tuple, tuple] = {}

    def load_state_dict(self, state_dict):
        self._flat_cache.clear()  # rebuilt from the loaded per-parameter state on the next step
        super().load_state_dict(state_dict)

    @staticmethod
    def _cache_key(group, params) -> tuple:
        """A bucket's key in the flat cache: its group, device and dtype."""
        return id(group), params[0].device, params[0].dtype

    def _buffers(self, group, params):
        """Flat V and scratch buffers for this bucket, their per-parameter views, and the positions
        of parameters without state.

        ``state[p]["square_avg"]`` are views of the flat V, so sqrt, + eps and rsqrt run as single ops
        with no temporaries. Per-parameter state stays the source of truth: when it is not (or no
        longer) a view of the cached buffer (first step, a parameter that skipped steps,
        ``load_state_dict``) the buffer is rebuilt from it. Nothing here writes ``self.state``.
        """
        first = params[0]
        key = self._cache_key(group, params)
        cache = self._flat_cache.get(key)
        current = [self.state[p].get("square_avg") for p in params]
        if cache is None or len(cache[2]) != len(params) or any(v is not c for v, c in zip(current, cache[2])):
            numels = [p.numel() for p in params]
            square_avg = torch.empty(sum(numels), device=first.device, dtype=first.dtype)
            scratch = torch.empty_like(square_avg)
            v_views = [c.view(p.shape) for c, p in zip(torch.split(square_avg, numels), params)]
            s_views = [c.view(p.shape) for c, p in zip(torch.split(scratch, numels), params)]
            fresh = [i for i, old in enumerate(current) if old is None]
            for old, view in zip(current, v_views):
                if old is not None:
                    view.copy_(old)
            cache = self._flat_cache[key] = (square_avg, scratch, v_views, s_views, fresh)
        return cache

    def _stage(self, group, params, grads):
        """The new V into the scratch buffer: alpha V + (1 - alpha) g^2, or g^2 without state."""
        alpha = group["alpha"]
        square_avg, new, v_views, n_views, fresh = self._buffers(group, params)
        if not fresh:
            torch.mul(square_avg, alpha, out=new)
            torch._foreach_addcmul_(n_views, grads, grads, value=1.0 - alpha)
        else:
            for i, (v, n, g) in enumerate(zip(v_views, n_views, grads)):
                if i in fresh:
                    torch.mul(g, g, out=n)
                else:
                    torch.mul(v, alpha, out=n)
                    n.addcmul_(g, g, value=1.0 - alpha)
        return new

    def _prepare(self, group, params, grads):
        if type(self)._update is not PSGLD._update:
            return None
        new = self._stage(group, params, grads)
        self._mark_staged(params)
        return new.sum()  # finite iff every gradient is (unless g^2 overflows)

    def _staged_finite(self, group, params):
        # the witness (the sum of the new V) overflowed: fine if every V is finite, but a g^2 past
        # the dtype's range would leave V = inf and G = 0 for good (the chain frozen), so refuse it
        key = self._cache_key(group, params)
        return bool(torch.isfinite(self._flat_cache[key][1]).all())

    def _update(self, group, params, grads):
        eps, lr = group["eps"], group["lr"]
        if not self._take_staged(params):
            self._stage(group, params, grads)
        key = self._cache_key(group, params)
        old, new, old_views, new_views, _fresh = self._flat_cache[key]
        # commit: the scratch buffer holds the new V; the old one becomes the scratch
        self._flat_cache[key] = (new, old, new_views, old_views, [])
        for p, view in zip(params, new_views):
            self.state[p]["square_avg"] = view
        denom, d_views = old, old_views
        torch.sqrt(new, out=denom)
        denom.add_(eps)  # 1 / G = eps + sqrt(V)
        torch._foreach_addcdiv_(params, grads, d_views, value=-lr)  # theta -= h G g
        std = self.noise_scale(group)  # sqrt(2 h T / N); sqrt(G) multiplies it below
        if std > 0.0:
            denom.rsqrt_()  # sqrt(G)
            torch._foreach_addcmul_(params, self._noise(params, std), d_views)  # + sqrt(2 h T / N) sqrt(G) xi
