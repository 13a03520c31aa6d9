"""Task families and suites.

A suite is a named list of tasks; a task belongs to the suites of its ``suite`` attribute and to
``all``, unless it is a study's (``in_all = False``: ``run all`` reproduces the published
leaderboard, and a study is run on its own, ``run <suite>``). Tasks are looked up by name with
:func:`get_task`.
"""

from __future__ import annotations

from .base import PROFILES, Diverged, Metric, RunContext, RunResult, Task
from .gaussian import TOY_TASKS


def _mnist_tasks() -> tuple[Task, ...]:
    try:
        from .mnist import MNIST_TASKS
    except ImportError:  # the MNIST family is optional at this stage
        return ()
    return MNIST_TASKS


def _reference_tasks() -> tuple[Task, ...]:
    from .reference import REFERENCE_TASKS

    return REFERENCE_TASKS


def all_tasks() -> dict[str, Task]:
    return {t.name: t for t in (*TOY_TASKS, *_mnist_tasks(), *_reference_tasks())}


#: suite name -> description; "ood" is computed by the same runs as "mnist" (no second training)
SUITE_ALIASES = {"ood": "mnist"}


def suites() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for task in all_tasks().values():
        out.setdefault(task.suite, []).append(task.name)
    tasks = all_tasks()
    out["all"] = [name for names in list(out.values()) for name in names if tasks[name].in_all]
    for alias, target in SUITE_ALIASES.items():
        if target in out:
            out[alias] = out[target]
    return out


def tasks_for(suite: str, profile: str) -> list[Task]:
    """The tasks of ``suite`` that belong to ``profile`` (some tasks run only in ``full``)."""
    known = suites()
    if suite not in known:
        raise ValueError(f"unknown suite {suite!r}; valid: {', '.join(sorted(known))}")
    tasks = all_tasks()
    return [tasks[name] for name in known[suite] if profile in tasks[name].profiles]


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(tasks))}")
    return tasks[name]


__all__ = ["PROFILES", "Diverged", "Metric", "RunContext", "RunResult", "Task", "all_tasks", "suites",
           "tasks_for", "get_task"]
