"""Every figure of the suite, drawn from records (a frame of them) alone.

The step-size sweeps of the toy tasks (:func:`plot_sweep`), the MNIST figures (:func:`plot_mnist`),
and the styles every figure shares, scripts' included (:func:`sampler_style`: a sampler's colour
and marker come from :mod:`benchmarks.lineup`). Each figure is written through
:func:`benchmarks.records.atomic_write` (:func:`save_figure`). Imports no task: what a task's
columns are comes in as :class:`benchmarks.columns.TaskColumns`.

matplotlib is imported inside the functions that draw: it is heavy, and ``report --no-plots`` (and
every importer of :func:`sampler_style`) never needs it.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from . import lineup
from .columns import DEFAULT_SWEEP_KEYS, TaskColumns
from .frame import row_label, row_order
from .records import atomic_write

#: the artifact an image-classification run records, which the MNIST figures draw
MNIST_ARTIFACT = "maxprob_hist"


def plot_all(frame: pd.DataFrame, records: list[dict], results_dir: Path, log: Callable[[str], None],
             columns: Mapping[str, TaskColumns] | None = None) -> list[Path]:
    """Every figure of one profile's records: the sweeps, then the MNIST figures (tasks in the order
    of ``columns``, then any other by name); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    columns = columns or {}
    out = []
    for task in frame.task.unique():
        sub = frame[(frame.task == task) & (frame.variant.isin(["tuned", "sweep"])) & (frame.seed == 0)]
        if (sub.variant == "sweep").any():
            out.append(plot_sweep(sub, task, results_dir, columns.get(task)))
    order = [t for t in columns if t in set(frame.task)] + sorted(set(frame.task) - set(columns))
    out += plot_mnist(frame, records, results_dir, order)
    return out


def sampler_style(label: str) -> dict:
    """The same colour and marker for a sampler in every figure (:func:`benchmarks.lineup.style`),
    with a dashed line for its labelled variants (``sgld [cold T=0.01]``)."""
    name, _, variant = label.partition(" [")
    return {**lineup.style(name), "ls": "--" if variant else "-"}


_VARIANT_LINES = ["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]


def figure_styles(labels: list[str]) -> dict[str, dict]:
    """:func:`sampler_style` for every row label of one figure, with the variants of one sampler
    (``sgld [custom: explore=0]``, ``sgld [custom: explore=0.5]``) on different dashed lines, in
    the order they come, so that no two rows of a figure look alike."""
    seen: dict[str, int] = {}
    out = {}
    for label in labels:
        style = sampler_style(label)
        name, _, variant = label.partition(" [")
        if variant:
            style["ls"] = _VARIANT_LINES[seen.get(name, 0) % len(_VARIANT_LINES)]
            seen[name] = seen.get(name, 0) + 1
        out[label] = style
    return out


#: panel titles of the sweep figure where a metric's table label is too terse
SWEEP_TITLES = {"kl": "KL(fit || true)", "var_error": "marginal variance error",
                "ess_per_1k_grads": "min bulk ESS per 1k gradients"}


def plot_sweep(sub: pd.DataFrame, task: str, results_dir: Path, spec: TaskColumns | None = None) -> Path:
    """The task's three ``sweep_keys`` (e.g. KL, variance error, ESS per 1k gradients) against lr,
    one line per sampler; runs that diverged (x) or failed (+) at that lr are marked on the top edge
    of each panel, not as values. Without ``spec``: the default sweep keys, their keys as titles."""
    import matplotlib.pyplot as plt

    keys = spec.sweep_keys if spec is not None else DEFAULT_SWEEP_KEYS
    columns = {m.key: m for m in spec.metrics} if spec is not None else {}
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4))
    for sampler, g in sub.groupby("sampler", sort=False):
        g = g.sort_values("lr")
        ok = g[g.status == "ok"]
        style = sampler_style(sampler)
        for ax, key in zip(axes, keys):
            if key in ok:
                ax.plot(ok.lr, ok[key], marker=style["marker"], color=style["color"], ls=style["ls"], alpha=0.85,
                        ms=5, label=sampler)
            for status, mark in (("diverged", "x"), ("failed", "+")):
                bad = g[g.status == status]
                if len(bad):
                    ax.plot(bad.lr, [0.97] * len(bad), mark, color=style["color"], ms=9, mew=2,
                            transform=ax.get_xaxis_transform(), clip_on=False)
    for ax, key in zip(axes, keys):
        m = columns.get(key)
        better = {"min": "  (lower is better)", "max": "  (higher is better)"}.get(m.better if m else "", "")
        ax.set_xscale("log")
        values = sub.loc[sub.status == "ok", key] if key in sub else pd.Series(dtype=float)
        if (values <= 0).any():  # counts that can be 0 (mode switches): linear near 0, log above 1
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(bottom=0)
        else:
            ax.set_yscale("log")
        ax.set_xlabel("lr (step on L = U / N)")
        ax.set_title(SWEEP_TITLES.get(key, m.label if m else key) + better, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(f"{task}: step-size sweep (top edge: x = diverged, + = failed at that lr)")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return save_figure(fig, results_dir / f"sweep_{task}.png")


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as the suite's figures are written (PNG, 90 dpi, the folder made if missing,
    atomically: :func:`benchmarks.records.atomic_write`), close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    return atomic_write(path, buffer.getvalue())


def plot_mnist(frame: pd.DataFrame, records: list[dict], results_dir: Path, tasks: list[str]) -> list[Path]:
    """Per image-classification task (one whose records carry the MNIST artifacts: ``maxprob_hist``,
    ``reliability``, ``roc_notmnist``), in the order of ``tasks``: one weight over the run (SGD
    against the samplers), the top probability on notMNIST, a reliability diagram per sampler and
    the ROC curves of MNIST against notMNIST."""
    import matplotlib.pyplot as plt

    out = []
    by_key = {r["key"]: r for r in records}
    for task in [t for t in tasks if t in set(frame.task)]:
        sub = frame[(frame.task == task) & (frame.status == "ok") & (frame.seed == 0)]
        rows = [(row_label(r.sampler, r.variant, r.hyper_label, sub), by_key[r.key].get("artifacts", {}))
                for r in sorted(sub.itertuples(), key=lambda r: (row_order(r.sampler, r.variant), r.hyper_label))]
        rows = [(label, a) for label, a in rows if a and MNIST_ARTIFACT in a]
        if not rows:
            continue
        styles = figure_styles([label for label, _a in rows])
        # 1. one weight over steps, SGD against SGLD (and the rest), and its distribution in a window;
        #    tuned rows only (none in a study of overrides: no figure)
        traced_rows = [(label, a) for label, a in rows if "weight_trace" in a and "[" not in label]
        fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(12, 4))
        for label, a in traced_rows:
            vals = np.asarray(a["weight_trace"]["values"])
            steps = np.arange(len(vals)) * a["weight_trace"]["every"]
            color = sampler_style(label)["color"]
            ax_t.plot(steps, vals, lw=0.7, label=label, color=color)
            window = vals[-len(vals) // 5:]
            if np.ptp(window) < 1e-3:  # a point (SGD): a line, not a density spike that hides the rest
                ax_h.axvline(window.mean(), color=color, lw=2, label=f"{label} (a point)")
            else:
                ax_h.hist(window, bins=min(40, max(5, len(window) // 4)), density=True, histtype="step", lw=1.5,
                          color=color, label=label)
        ax_t.set_xlabel("step")
        ax_t.set_ylabel("value of one weight (layer 2)")
        ax_t.set_title("one weight over the run")
        ax_h.set_xlabel("weight value")
        ax_h.set_title("its distribution over the last 20 % of steps")
        if traced_rows:
            ax_h.legend(fontsize=8)
            ax_t.legend(fontsize=8)
        traced = {label for label, _a in traced_rows}
        fig.suptitle(f"{task}: " + ("SGD converges to a point, the samplers explore" if "sgd" in traced
                                    else "one weight of each sampler's chain"))
        fig.tight_layout()
        if traced_rows:
            out.append(save_figure(fig, results_dir / f"{task}_weight.png"))
        else:
            plt.close(fig)
        # 2. top predicted probability on notMNIST, every sampler
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, a in rows:
            h = a["maxprob_hist"]
            centers = 0.5 * (np.asarray(h["bins"][1:]) + np.asarray(h["bins"][:-1]))
            counts = np.asarray(h["counts"]["notmnist"], dtype=float)
            style = styles[label]
            ax.plot(centers, counts / counts.sum(), marker=".", label=label, color=style["color"], ls=style["ls"])
        ax.set_yscale("log")
        ax.set_xlabel("top predicted probability on a notMNIST letter")
        ax.set_ylabel("fraction of letters")
        ax.set_title(f"{task}: how sure is the network that a letter is a digit?")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(save_figure(fig, results_dir / f"{task}_notmnist_confidence.png"))
        # 3. reliability diagrams
        n = len(rows)
        cols = min(n, 4)
        fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(3.2 * cols, 3.2 * math.ceil(n / cols)), squeeze=False)
        for ax, (label, a) in zip(axes.flat, rows):
            r = a["reliability"]
            lo, hi = np.asarray(r["bin_lower"]), np.asarray(r["bin_upper"])
            acc, count = np.asarray(r["accuracy"], dtype=float), np.asarray(r["count"])
            ax.bar(lo, np.where(count > 0, acc, 0), width=hi - lo, align="edge", edgecolor="k", alpha=0.7)
            ax.plot([0, 1], [0, 1], "r--", lw=1)
            ax.set_title(label, fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence (top probability)", fontsize=8)
            ax.set_ylabel("accuracy", fontsize=8)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"{task}: reliability (accuracy per confidence bin)")
        fig.tight_layout()
        out.append(save_figure(fig, results_dir / f"{task}_reliability.png"))
        # 4. ROC curves MNIST vs notMNIST
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for label, a in rows:
            roc = a["roc_notmnist"]
            style = styles[label]
            ax.plot(roc["fpr"], roc["tpr"], label=label, color=style["color"], ls=style["ls"])
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("false positive rate (MNIST flagged)")
        ax.set_ylabel("true positive rate (notMNIST flagged)")
        ax.set_title(f"{task}: OOD detection by predictive entropy")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(save_figure(fig, results_dir / f"{task}_roc.png"))
    return out
