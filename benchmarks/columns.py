"""How a task's leaderboard reads, without the task: its columns (:class:`Metric`) and which of
them the summary and the sweep figure show (:class:`TaskColumns`).

A neutral module: the tasks declare their columns with :class:`Metric`, and the report and the
figures (which import no task) are handed a ``{task name: TaskColumns}`` mapping by their caller
(``python -m benchmarks report``: :func:`of_tasks` over ``benchmarks.tasks.all_tasks()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

#: the metrics a step-size sweep figure plots against lr unless a task says otherwise
DEFAULT_SWEEP_KEYS = ("kl", "var_error", "ess_per_1k_grads")


@dataclass(frozen=True)
class Metric:
    """How a leaderboard column reads: record key, header, and whether lower or higher is better."""

    key: str
    label: str
    better: str = "min"  # "min" | "max" | "none"
    fmt: str = ".4g"


@dataclass(frozen=True)
class TaskColumns:
    """What the report needs to know of one task: its table's columns (the first is the headline),
    the ones its summary shows, the three its sweep figure plots, and its one-line description."""

    name: str
    metrics: tuple[Metric, ...]
    summary_keys: tuple[str, ...] = ()
    sweep_keys: tuple[str, ...] = DEFAULT_SWEEP_KEYS
    description: str = ""

    @classmethod
    def of(cls, task: Any) -> "TaskColumns":
        """The columns of a task object (anything with ``name``, ``metrics`` and optionally
        ``summary_keys``, ``sweep_keys``, ``description``)."""
        metrics = tuple(Metric(m.key, m.label, m.better, m.fmt) for m in task.metrics)
        return cls(task.name, metrics, tuple(getattr(task, "summary_keys", ()) or ()),
                   tuple(getattr(task, "sweep_keys", DEFAULT_SWEEP_KEYS)), getattr(task, "description", ""))


def of_tasks(tasks: Iterable[Any]) -> dict[str, TaskColumns]:
    """``{task.name: TaskColumns}`` in the tasks' order (the leaderboard's order of sections)."""
    return {task.name: TaskColumns.of(task) for task in tasks}
