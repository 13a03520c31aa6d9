"""Records -> leaderboard tables (markdown + CSV) and figures (PNG).

Built from the run records alone (``<results>/records/*.json``), so ``python -m benchmarks report``
rebuilds everything without rerunning. One table per task (rows: sampler and labelled variant;
columns: the task's metrics as mean +- sd over seeds, gradient evaluations, wall time; the best
value of each column in bold), then a summary table (sampler x task headline metric, with rank).

Imports no task, grid or executor (``tests/test_architecture.py`` checks it): what each task's
columns are comes in as ``columns``, a ``{task name: TaskColumns}`` mapping the caller builds
(``python -m benchmarks report``: :func:`benchmarks.columns.of_tasks` over the tasks). A task
without an entry gets a column per numeric metric of its records, by key.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from .columns import Metric, TaskColumns
from .figures import plot_all
from .frame import records_frame, row_label, row_order
from .records import atomic_write, load_records

ROW_KEYS = ["task", "sampler", "variant", "hyper_label", "temperature"]


def _metrics_of(task: str, frame: pd.DataFrame, columns: Mapping[str, TaskColumns]) -> list[Metric]:
    known = columns.get(task)
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


def task_table(frame: pd.DataFrame, task: str,
               columns: Mapping[str, TaskColumns] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table as strings, numeric long table) for one task, sweep rows excluded."""
    df = frame[(frame.task == task) & (frame.variant != "sweep")]
    metrics = _metrics_of(task, df, columns or {})
    display_rows, long_rows = [], []
    groups = sorted(df.groupby(ROW_KEYS[1:], sort=False, dropna=False), key=lambda kv: row_order(*kv[0][:2]))
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
        row = {"sampler": row_label(sampler, variant, hyper_label, df),
               "hyperparameters": hyper_label, "tuning": "; ".join(sorted(set(g.tuning))) if "tuning" in g else "",
               "T": f"{temperature:g}", "seeds ok": f"{len(ok)}/{len(g)}"}
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


def summary_table(frame: pd.DataFrame,
                  columns: Mapping[str, TaskColumns] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sampler x task headline metric (tuned rows, mean over seeds) with the rank on each task.
    Rows run with ``--hyper`` overrides (variant ``custom``) are ranked beside them as
    ``sampler [custom]`` (each distinct override apart, see :func:`_custom_label`), and rows of a
    sampler with no tuned hyperparameters as ``sampler [untuned]``, so a row tuned differently
    from the others is marked; labelled rows at T = 1 (``sgld [+cv]``, ``sgld [cyclical]``) rank
    beside them; tempered (cold) rows and sweeps are not ranked.

    A row whose runs on a task did not all finish ``ok`` (a diverged or failed seed) ranks last
    there, below every row whose seeds all finished: its cell says ``diverged`` (no seed ok) or
    gives the mean of the ok seeds with ``[k/n ok]``. A row that never ran a task shows ``-``
    there and is not ranked on it. A task may rank on more than one metric (its ``summary_keys``:
    mnist-mlp ranks on error and on notMNIST AUROC), one column each, headed ``task: metric``;
    ``ranked`` counts the columns a row is ranked in (of all the columns), the same columns its
    ``mean rank`` averages, and the table is sorted by it (most first), then by the mean rank.
    Tasks in the order of ``columns``, then any other by name."""
    ranked = frame.variant.isin(["tuned", "custom", "untuned"])
    # labelled rows at T = 1 (control variates, the cyclical protocol) rank beside them; tempered
    # (cold) rows target another distribution and never do
    labelled = ~frame.variant.isin(["tuned", "custom", "untuned", "sweep", "tuning"]) & (frame.temperature == 1.0)
    df = frame[ranked | labelled].copy()
    per_task = {t: df[df.task == t] for t in set(df.task)}  # configurations are told apart within a task
    df["sampler"] = [row_label(s, v, h, per_task[t]) for s, v, h, t in zip(df.sampler, df.variant, df.hyper_label, df.task)]
    known = columns or {}
    tasks = [t for t in known if t in set(df.task)] + sorted(set(df.task) - set(known))
    cells, numeric = {}, []
    for task in tasks:
        sub = df[df.task == task]
        ok = sub[sub.status == "ok"]
        metrics = _metrics_of(task, ok if len(ok) else sub, known)
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
    cell_columns = list(table.columns)
    table = table.fillna("-")
    if len(num):
        # the count and the mean are over the same (task, metric) columns: one per rank averaged
        ranked = num.groupby("sampler").size().reindex(table.index).fillna(0).astype(int)
        table["ranked"] = [f"{k}/{len(cell_columns)}" for k in ranked]
        table["mean rank"] = num.groupby("sampler")["rank"].mean().round(2).reindex(table.index)
        table = table.assign(_k=ranked).sort_values(["_k", "mean rank"], ascending=[False, True]).drop(columns="_k")
        table = table[cell_columns + ["ranked", "mean rank"]]
    table.index.name = "sampler"
    return table.reset_index(), num


def build(results_dir: str | os.PathLike = "results", profile: str | None = None, plots: bool = True,
          log: Callable[[str], None] = print, columns: Mapping[str, TaskColumns] | None = None) -> Path | None:
    """Write leaderboard.md, leaderboard.csv, summary.csv and the figures; returns the markdown path.

    ``columns``: each task's columns, in the order of the leaderboard's sections (tasks without an
    entry follow by name, with a column per numeric metric)."""
    columns = dict(columns or {})
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
    tasks = columns
    order = [t for t in tasks if t in set(frame.task)] + sorted(set(frame.task) - set(tasks))
    md = [f"# sgmcmc-bench leaderboard (profile `{profile}`)", "",
          "Built by `python -m benchmarks report` from the run records in `records/`. "
          "Cells are mean ± sd over seeds; the best value of each column is in bold. "
          "T is the temperature (T = 1: the Bayesian posterior; T < 1: a tempered, cold posterior). "
          "In the summary a row ranks last on a task where any of its seeds diverged or failed, `-` marks "
          "a task it did not run. Each column is one ranking metric of a task (`task: metric`; a task may rank "
          "on two), `ranked` counts the columns a row is ranked in, and `mean rank` is the mean of those "
          "ranks.", ""]
    summary, summary_num = summary_table(frame, columns)
    md += ["## Summary: ranking metric(s) per task (rank)", "", summary.to_markdown(index=False), ""]
    long_tables = []
    for task in order:
        display, long = task_table(frame, task, columns)
        if display.empty:
            continue
        long_tables.append(long)
        desc = tasks[task].description if task in tasks else ""
        md += [f"## {task}", "", desc, "", display.to_markdown(index=False), ""]
    if plots:
        figures = plot_all(frame, records, results_dir, log, columns)
    else:  # the figures already there still belong to these tables: keep them listed
        old_md = results_dir / "leaderboard.md"
        listed = old_md.read_text().partition("## Figures")[2] if old_md.is_file() else ""
        figures = [results_dir / line.split("(", 1)[1].rstrip(")") for line in listed.splitlines()
                   if line.startswith("![") and "(" in line]
        figures = [f for f in figures if f.is_file()]
    if figures:
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    path = results_dir / "leaderboard.md"
    atomic_write(path, "\n".join(md))
    atomic_write(results_dir / "leaderboard.csv", pd.concat(long_tables).to_csv(index=False) if long_tables else "")
    atomic_write(results_dir / "summary.csv", summary_num.to_csv(index=False))
    return path
