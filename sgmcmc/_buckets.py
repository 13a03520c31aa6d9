"""The grouping of a sampler's parameters into buckets (one param group, device and dtype each),
cached from step to step."""

from __future__ import annotations

import weakref
from collections import defaultdict

import torch

__all__ = ["BucketCache"]


class BucketCache:
    """(group index, group, params, grads, offsets) for every (group, device, dtype) bucket of
    parameters with a gradient; ``offsets`` are the parameters' positions in their group.

    The grouping is rebuilt only when the set of parameters with a gradient changes (a ``grad``
    turning None or back, a parameter added, or moved to another device, dtype or shape). When every
    parameter still holds the very gradient tensor it held last step (a loop that writes its
    gradients in place, as the toy tasks do), the grouping is reused without asking each parameter
    for its device, dtype and shape: a new device, dtype or shape comes with a new gradient tensor
    (torch checks an assigned ``grad`` against its parameter). The cache holds those gradients by
    weak reference only, so a gradient set to None is freed at once, as without a sampler.
    Rebuilt on demand (never pickled).
    """

    __slots__ = ("cached",)

    def __init__(self):
        self.cached: tuple | None = None  # (key, groups, layout, weak references to the grads)

    def clear(self) -> None:
        self.cached = None

    def work(self, groups: list[dict], state, owner: str) -> list:
        cached = self.cached
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
                            raise RuntimeError(f"{owner} does not support sparse gradients")
                        b = buckets[(p.device, p.dtype)]
                        b[0].append(p)
                        b[1].append(pi)
                    layout.extend((gi, group, params, offsets) for params, offsets in buckets.values())
                follow_params(layout, state)
            seen = [None if p.grad is None else weakref.ref(p.grad) for group in groups for p in group["params"]]
            self.cached = (key, list(groups), layout, seen)
        return [(gi, group, params, [p.grad for p in params], offsets) for gi, group, params, offsets in layout]


def follow_params(layout: list, state) -> None:
    """A parameter moved to another dtype or device mid-chain (``model.double()``, ``.to(...)``)
    takes its state along, as ``load_state_dict`` casts a saved state: a velocity or preconditioner
    keeps its values in the parameter's new dtype and device, and the next update runs instead of
    failing halfway through."""
    for _gi, _group, params, _offsets in layout:
        for p in params:
            st = state.get(p)
            if not st:
                continue
            for k, v in st.items():
                if (isinstance(v, torch.Tensor) and v.is_floating_point() and v.shape == p.shape
                        and (v.dtype != p.dtype or v.device != p.device)):
                    st[k] = v.to(device=p.device, dtype=p.dtype)


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
