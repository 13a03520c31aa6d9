"""Records -> leaderboard tables (markdown + CSV) and figures (PNG).

Built from the run records alone (``<results>/records/*.json``), so ``python -m benchmarks report``
rebuilds everything without rerunning. One table per task (rows: sampler and labelled variant;
columns: the task's metrics as mean +- sd over seeds, gradient evaluations, wall time; the best
value of each column in bold), then a summary table (sampler x task headline metric, with rank).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .runner import load_records
from .tasks import all_tasks
from .tasks.base import Metric

ROW_KEYS = ["task", "sampler", "variant", "hyper_label", "temperature"]


def _hyper_label(hyper: dict) -> str:
    parts = []
    for k in sorted(hyper):
        if k == "temperature":
            continue
        v = hyper[k]
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: configuration columns, status, wall time, gradient evaluations, metrics."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        hyper = cfg.get("hyper", {})
        row = {
            "task": cfg["task"], "sampler": cfg["sampler"], "variant": cfg.get("variant", "tuned"),
            "seed": cfg["seed"], "profile": cfg["profile"], "hyper_label": _hyper_label(hyper),
            "lr": hyper.get("lr", np.nan), "temperature": float(hyper.get("temperature", 1.0)),
            "status": rec["status"], "wall_time_s": rec.get("wall_time_s", np.nan),
            "grad_evals": rec.get("grad_evals", np.nan), "key": rec["key"],
        }
        for k, v in rec["metrics"].items():
            if v is None or isinstance(v, (int, float)):
                row[k] = np.nan if v is None else float(v)
        rows.append(row)
    return pd.DataFrame(rows)


def _metrics_of(task: str, frame: pd.DataFrame) -> list[Metric]:
    known = all_tasks().get(task)
    if known is not None:
        return list(known.metrics)
    skip = {"seed", "lr", "temperature", "wall_time_s", "grad_evals"}
    cols = [c for c in frame.columns if frame[c].dtype.kind == "f" and c not in skip]
    return [Metric(c, c, "none") for c in cols]


def _fmt(mean: float, sd: float, fmt: str) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    s = format(mean, fmt)
    if sd is not None and not math.isnan(sd) and sd > 0:
        s += " ± " + format(sd, fmt)
    return s


def _row_order(sampler: str, variant: str) -> tuple:
    """Built-in samplers in their usual order, then others by name; the tuned row before variants."""
    from .runner import DEFAULT_SAMPLERS

    rank = DEFAULT_SAMPLERS.index(sampler) if sampler in DEFAULT_SAMPLERS else len(DEFAULT_SAMPLERS)
    return (variant != "tuned", rank, sampler, variant)


def task_table(frame: pd.DataFrame, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table as strings, numeric long table) for one task, sweep rows excluded."""
    df = frame[(frame.task == task) & (frame.variant != "sweep")]
    metrics = _metrics_of(task, df)
    display_rows, long_rows = [], []
    groups = sorted(df.groupby(ROW_KEYS[1:], sort=False, dropna=False), key=lambda kv: _row_order(*kv[0][:2]))
    stats = {}
    for key, g in groups:
        ok = g[g.status == "ok"]
        with np.errstate(invalid="ignore"):  # the sd of values with an inf among them is nan, silently
            stats[key] = {m.key: (ok[m.key].mean() if m.key in ok and len(ok) else np.nan,
                                  ok[m.key].std(ddof=1) if m.key in ok and len(ok) > 1 else np.nan) for m in metrics}
    best = {}
    for m in metrics:
        vals = [(s[m.key][0], k) for k, s in stats.items() if not np.isnan(s[m.key][0])]
        if vals and m.better in ("min", "max"):
            target = min(v for v, _ in vals) if m.better == "min" else max(v for v, _ in vals)
            best[m.key] = {k for v, k in vals if v == target}
    for key, g in groups:
        sampler, variant, hyper_label, temperature = key
        ok = g[g.status == "ok"]
        row = {"sampler": sampler if variant == "tuned" else f"{sampler} [{variant}]",
               "hyperparameters": hyper_label, "T": f"{temperature:g}",
               "seeds ok": f"{len(ok)}/{len(g)}"}
        for m in metrics:
            mean, sd = stats[key][m.key]
            cell = _fmt(mean, sd, m.fmt)
            row[m.label] = f"**{cell}**" if key in best.get(m.key, ()) else cell
            long_rows.append({"task": task, "sampler": sampler, "variant": variant, "hyperparameters": hyper_label,
                              "temperature": temperature, "metric": m.key, "mean": mean, "sd": sd,
                              "n_ok": len(ok), "n_runs": len(g)})
        row["grad evals"] = _fmt(ok.grad_evals.mean(), np.nan, ".3g") if len(ok) else "-"
        row["wall s"] = _fmt(ok.wall_time_s.mean(), ok.wall_time_s.std(ddof=1) if len(ok) > 1 else np.nan, ".3g") if len(ok) else "-"
        bad = g[g.status != "ok"]
        if len(bad):
            row["seeds ok"] += " (" + ", ".join(f"{n} {s}" for s, n in bad.status.value_counts().items()) + ")"
        display_rows.append(row)
    return pd.DataFrame(display_rows), pd.DataFrame(long_rows)


def _custom_label(sampler: str, hyper_label: str, frame: pd.DataFrame) -> str:
    """``sampler [custom]``, or, when the sampler was run with several ``--hyper`` overrides,
    ``sampler [custom: k=v, ...]`` with the keys in which they differ, so that distinct
    configurations are ranked apart rather than averaged into one row."""
    labels = sorted(set(frame.hyper_label[(frame.sampler == sampler) & (frame.variant == "custom")]))
    if len(labels) < 2:
        return f"{sampler} [custom]"
    parsed = [dict(part.partition("=")[::2] for part in label.split(", ") if part) for label in labels]
    mine = parsed[labels.index(hyper_label)]
    keys = sorted({k for d in parsed for k in d if any(e.get(k) != d.get(k) for e in parsed)})
    return f"{sampler} [custom: " + ", ".join(f"{k}={mine.get(k, '-')}" for k in keys) + "]"


def row_label(sampler: str, variant: str, hyper_label: str, frame: pd.DataFrame) -> str:
    """How a row is named in the summary and the figures: the sampler (its tuned row), ``sampler
    [custom...]`` (see :func:`_custom_label`) or ``sampler [variant]``."""
    if variant == "tuned":
        return sampler
    return _custom_label(sampler, hyper_label, frame) if variant == "custom" else f"{sampler} [{variant}]"


def summary_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sampler x task headline metric (tuned rows, mean over seeds) with the rank on each task.
    Rows run with ``--hyper`` overrides (variant ``custom``) are ranked beside them as
    ``sampler [custom]`` (each distinct override apart, see :func:`_custom_label`); labelled
    variants (cold posteriors) and sweeps are not.

    A row whose runs on a task did not all finish ``ok`` (a diverged or failed seed) ranks last
    there, below every row whose seeds all finished: its cell says ``diverged`` (no seed ok) or
    gives the mean of the ok seeds with ``[k/n ok]``. A row that never ran a task shows ``-``
    there and is not ranked on it; ``tasks`` counts the tasks a row is ranked on, and the table is
    sorted by it (most first), then by the mean rank over those tasks."""
    df = frame[frame.variant.isin(["tuned", "custom"])].copy()
    df["sampler"] = [row_label(s, v, h, df) for s, v, h in zip(df.sampler, df.variant, df.hyper_label)]
    known = all_tasks()
    tasks = [t for t in known if t in set(df.task)] + sorted(set(df.task) - set(known))
    cells, numeric = {}, []
    for task in tasks:
        sub = df[df.task == task]
        ok = sub[sub.status == "ok"]
        metrics = _metrics_of(task, ok if len(ok) else sub)
        keys = known[task].summary_keys if task in known and known[task].summary_keys else (metrics[0].key,)
        runs = sub.groupby("sampler").status.agg(["size", lambda st: int((st == "ok").sum())])
        runs.columns = ["n", "n_ok"]
        bad_status = sub[sub.status != "ok"].groupby("sampler").status.agg(lambda st: st.value_counts().index[0])
        for metric in [m for m in metrics if m.key in keys]:
            if metric.key not in sub:
                continue
            means = ok.groupby("sampler")[metric.key].mean() if len(ok) else pd.Series(dtype=float)
            complete = [s for s in runs.index if runs.n_ok[s] == runs.n[s] and s in means and not np.isnan(means[s])]
            ranks = means[complete].rank(ascending=(metric.better != "max"), method="min")
            last = len(complete) + 1
            for sampler in runs.index:
                n, n_ok = int(runs.n[sampler]), int(runs.n_ok[sampler])
                value = float(means.get(sampler, np.nan))
                if n_ok == n and np.isnan(value):  # an undefined metric (say, the R-hat of a still chain)
                    cells.setdefault(sampler, {})[f"{task}: {metric.label}"] = "-"
                    continue
                if n_ok == n:
                    rank, text, note = int(ranks[sampler]), format(value, metric.fmt), ""
                elif n_ok == 0:
                    rank, text, note = last, bad_status[sampler], bad_status[sampler]
                else:
                    rank, note = last, f"{n_ok}/{n} ok"
                    text = f"{format(value, metric.fmt)} [{note}]"
                cells.setdefault(sampler, {})[f"{task}: {metric.label}"] = f"{text} ({rank})"
                numeric.append({"sampler": sampler, "task": task, "metric": metric.key, "value": value,
                                "rank": rank, "note": note})
    num = pd.DataFrame(numeric, columns=["sampler", "task", "metric", "value", "rank", "note"])
    table = pd.DataFrame.from_dict(cells, orient="index")
    columns = list(table.columns)
    table = table.fillna("-")
    if len(num):
        ranked = num.groupby("sampler").task.nunique().reindex(table.index).fillna(0).astype(int)
        table["tasks"] = [f"{k}/{len(tasks)}" for k in ranked]
        table["mean rank"] = num.groupby("sampler")["rank"].mean().round(2).reindex(table.index)
        table = table.assign(_k=ranked).sort_values(["_k", "mean rank"], ascending=[False, True]).drop(columns="_k")
        table = table[columns + ["tasks", "mean rank"]]
    table.index.name = "sampler"
    return table.reset_index(), num


def build(results_dir: str | os.PathLike = "results", profile: str | None = None, plots: bool = True,
          log: Callable[[str], None] = print) -> Path | None:
    """Write leaderboard.md, leaderboard.csv, summary.csv and the figures; returns the markdown path."""
    results_dir = Path(results_dir)
    corrupt: list[str] = []
    records = load_records(results_dir, warn=lambda m: (corrupt.append(m), log(m)))
    if not records:
        log(f"no readable records under {results_dir / 'records'}"
            + (f" ({len(corrupt)} corrupt, named above)" if corrupt else "")
            + ": nothing to report (run `python -m benchmarks run ...` first)")
        return None
    frame = records_frame(records)
    if profile is None:
        profile = "default" if (frame.profile == "default").any() else frame.profile.value_counts().index[0]
    present = sorted(set(frame.profile))
    others = frame[frame.profile != profile].profile.value_counts()
    frame = frame[frame.profile == profile]
    if frame.empty:
        log(f"no records of profile {profile!r} under {results_dir}; profiles present: {', '.join(present)}")
        return None
    if len(others):
        log(f"report of profile {profile!r}; left out: " + ", ".join(f"{n} {p} record(s)" for p, n in others.items())
            + " (`report --profile P` for those)")
    tasks = all_tasks()
    order = [t for t in tasks if t in set(frame.task)] + sorted(set(frame.task) - set(tasks))
    md = [f"# sgmcmc-bench leaderboard (profile `{profile}`)", "",
          "Built by `python -m benchmarks report` from the run records in `records/`. "
          "Cells are mean ± sd over seeds; the best value of each column is in bold. "
          "T is the temperature (T = 1: the Bayesian posterior; T < 1: a tempered, cold posterior). "
          "In the summary a row ranks last on a task where any of its seeds diverged or failed, `-` marks "
          "a task it did not run, and `tasks` counts the tasks it is ranked on.", ""]
    summary, summary_num = summary_table(frame)
    md += ["## Summary: headline metric per task (rank)", "", summary.to_markdown(index=False), ""]
    long_tables = []
    for task in order:
        display, long = task_table(frame, task)
        if display.empty:
            continue
        long_tables.append(long)
        desc = tasks[task].description if task in tasks else ""
        md += [f"## {task}", "", desc, "", display.to_markdown(index=False), ""]
    if plots:
        figures = plot_all(frame, records, results_dir, log)
    else:  # the figures already there still belong to these tables: keep them listed
        old_md = results_dir / "leaderboard.md"
        listed = old_md.read_text().partition("## Figures")[2] if old_md.is_file() else ""
        figures = [results_dir / line.split("(", 1)[1].rstrip(")") for line in listed.splitlines()
                   if line.startswith("![") and "(" in line]
        figures = [f for f in figures if f.is_file()]
    if figures:
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    path = results_dir / "leaderboard.md"
    from .runner import atomic_write_text

    atomic_write_text(path, "\n".join(md))
    atomic_write_text(results_dir / "leaderboard.csv", pd.concat(long_tables).to_csv(index=False) if long_tables else "")
    atomic_write_text(results_dir / "summary.csv", summary_num.to_csv(index=False))
    return path


# --------------------------------------------------------------------------- figures
def plot_all(frame: pd.DataFrame, records: list[dict], results_dir: Path, log: Callable[[str], None]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out = []
    for task in frame.task.unique():
        sub = frame[(frame.task == task) & (frame.variant.isin(["tuned", "sweep"])) & (frame.seed == 0)]
        if (sub.variant == "sweep").any():
            out.append(plot_sweep(sub, task, results_dir))
    try:
        from .tasks.mnist import plot_figures
    except ImportError:
        return out
    out += plot_figures(frame, records, results_dir)
    return out


_MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")


def sampler_style(label: str) -> dict:
    """The same colour for a sampler in every figure (the built-ins in their table order, then others
    by name), with a dashed line for its labelled variants (``sgld [cold T=0.01]``)."""
    from .runner import DEFAULT_SAMPLERS

    name, _, variant = label.partition(" [")
    rank = DEFAULT_SAMPLERS.index(name) if name in DEFAULT_SAMPLERS else len(DEFAULT_SAMPLERS) + sum(map(ord, name)) % 5
    return {"color": f"C{rank % 10}", "marker": _MARKERS[rank % len(_MARKERS)], "ls": "--" if variant else "-"}


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


def plot_sweep(sub: pd.DataFrame, task: str, results_dir: Path) -> Path:
    """The task's three ``sweep_keys`` (e.g. KL, variance error, ESS per 1k gradients) against lr,
    one line per sampler; runs that diverged (x) or failed (+) at that lr are marked on the top edge
    of each panel, not as values."""
    import matplotlib.pyplot as plt

    from .tasks import get_task

    spec = get_task(task)
    keys = spec.sweep_keys
    columns = {m.key: m for m in spec.metrics}
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
    """Write ``fig`` as the suite's figures are written (PNG, 90 dpi, the folder made if missing), close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
