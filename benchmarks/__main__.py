"""python -m benchmarks {list, run, report, compare, data}: the command line (thin: parse, call, exit code).

The work is elsewhere: :mod:`benchmarks.grid` (configs -> run specs), :mod:`benchmarks.executors`
(run them), :mod:`benchmarks.report` (records -> tables and figures), :mod:`benchmarks.compare`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import sgmcmc

from . import columns, compare, executors, grid, report
from .data.cli import add_subcommand as add_data_subcommand
from .lineup import builtin_samplers
from .records import records_dir
from .tasks import all_tasks, suites
from .tasks.base import PROFILES

EXIT_USAGE = 2


def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {value}")
        return value

    return parse


def _hyper_pair(text: str) -> tuple[str, float | str]:
    """KEY=VALUE: a number when VALUE reads as one (lr=0.05), else the string (prior=fanin); whether
    the key exists and the value is valid is checked against the selected samplers and tasks."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"--hyper takes KEY=VALUE (e.g. lr=0.05 or prior=fanin), got {text!r}")
    try:
        return key, float(value)
    except ValueError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=(
        "sgmcmc-bench: run SG-MCMC samplers against tasks with known or measurable answers, "
        "and build leaderboard tables from the run records."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,report,compare,data}")

    p_list = sub.add_parser("list", help="list samplers, tasks and suites")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="run a suite (skips runs that already have a record)")
    p_run.add_argument("suite", choices=sorted(suites()), help="which suite")
    p_run.add_argument("--samplers", default=None,
                       help=f"comma-separated sampler names or module:Class (default: the built-ins, "
                            f"{','.join(builtin_samplers())})")
    p_run.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p_run.add_argument("--seeds", type=_positive_int("--seeds"), default=None,
                       help="number of seeds per configuration (default by profile: quick 1, default 3, full 5)")
    p_run.add_argument("--profile", choices=PROFILES, default="default", help="budget profile (default: default)")
    p_run.add_argument("--jobs", type=_positive_int("--jobs"), default=1, help="parallel worker processes")
    p_run.add_argument("--executor", choices=("local", "dask"), default="local",
                       help="local processes (default) or a dask.distributed cluster")
    p_run.add_argument("--scheduler", default=None,
                       help="dask scheduler address (tcp://host:8786); without it --executor dask starts a LocalCluster")
    p_run.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p_run.add_argument("--results-dir", default="results", help="where records and tables go (default: results)")
    p_run.add_argument("--force", action="store_true", help="rerun configurations that already have a record")
    p_run.add_argument("--no-sweep", action="store_true", help="skip the step-size sweeps of the toy tasks")
    p_run.add_argument("--no-report", action="store_true", help="do not rebuild the leaderboard afterwards")
    p_run.add_argument("--hyper", type=_hyper_pair, action="append", default=[], metavar="KEY=VALUE",
                       help="override a hyperparameter for every selected sampler (rows labelled 'custom')")
    _data_options(p_run)
    p_run.set_defaults(func=cmd_run, _parser=p_run)  # errors print the ``run`` usage

    p_rep = sub.add_parser("report", help="rebuild tables and figures from the records, without rerunning")
    p_rep.add_argument("--results-dir", default="results", help="where the records are (default: results)")
    p_rep.add_argument("--profile", choices=PROFILES, default=None,
                       help="which profile's records (default: 'default' if present)")
    p_rep.add_argument("--no-plots", action="store_true", help="tables only, no PNG figures")
    p_rep.set_defaults(func=cmd_report)

    p_cmp = sub.add_parser("compare", help="do two results folders hold the same runs? (a reproduction check)",
                           description="Match the records of two results folders by configuration and compare "
                           "status, gradient count and every metric but timings. Exit 0 when every run in both "
                           "agrees, 1 when one differs, a record is corrupt or none is in both, 2 on a bad argument.")
    p_cmp.add_argument("a", help="a results folder (holding records/), e.g. the published results")
    p_cmp.add_argument("b", help="another, e.g. a rerun's --results-dir")
    p_cmp.add_argument("--rtol", type=float, default=0.0,
                       help="relative tolerance for numbers (default 0: to the last digit, as a seeded rerun on the "
                            "same software gives)")
    p_cmp.add_argument("--show", type=_positive_int("--show"), default=20, help="list at most this many differing runs")
    p_cmp.set_defaults(func=cmd_compare, _parser=p_cmp)

    add_data_subcommand(sub)
    return parser


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="a data directory to try first (also $SGMCMC_DATA_DIR)")
    p.add_argument("--offline", action="store_true", default=None,
                   help="never touch the network (also $SGMCMC_OFFLINE=1)")


def cmd_list(args) -> int:
    print("samplers:")
    for name in sgmcmc.available():
        cls = sgmcmc.get(name)
        hyper = ", ".join(f"{k}={spec.default}" if spec.default is not None else k for k, spec in cls.all_hypers().items())
        print(f"  {name:12s} {cls.__module__}.{cls.__qualname__}({hyper})")
    print("  (or any module:Class naming a sgmcmc.Sampler subclass)")
    print("tasks:")
    for name, task in all_tasks().items():
        print(f"  {name:18s} [{task.suite}] {task.description}")
    print("suites:")
    known = suites()
    width = max(map(len, known))
    for name, tasks in sorted(known.items()):
        note = "" if set(tasks) <= set(known["all"]) else "  (a study: not part of `all`)"
        print(f"  {name:{width}s} {', '.join(tasks)}{note}")
    print(f"profiles: {', '.join(PROFILES)}")
    return 0


def cmd_run(args) -> int:
    parser = args._parser
    samplers = None
    if args.samplers is not None:
        samplers = list(dict.fromkeys(s.strip() for s in args.samplers.split(",") if s.strip()))
        if not samplers:
            parser.error(f"--samplers {args.samplers!r} names no sampler; valid: {', '.join(sgmcmc.available())} "
                         f"(or 'module:Class' for your own)")
        for name in samplers:
            try:
                sgmcmc.get(name)
            except sgmcmc.UnknownSamplerError as exc:
                parser.error(f"--samplers: {exc}")
    try:
        executors.resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if args.scheduler and args.executor != "dask":
        parser.error("--scheduler needs --executor dask")
    if args.executor == "dask":
        # only for --executor dask: the module imports dask.distributed, an optional dependency
        from .executors.dask import require_dask

        try:
            require_dask()
        except executors.DaskError as exc:
            parser.error(str(exc))
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir}: no such directory (see `python -m benchmarks data` for where "
                     f"each dataset is looked for)")
    overrides = dict(args.hyper)
    twice = sorted(k for k, n in Counter(k for k, _ in args.hyper).items() if n > 1)
    if twice:
        parser.error(f"--hyper {', '.join(twice)} given more than once; give each key once (a second value "
                     f"would silently win)")
    folder = records_dir(args.results_dir).resolve()
    existing = next(q for q in (folder, *folder.parents) if q.exists())  # created only when a run ends
    if not existing.is_dir():
        parser.error(f"--results-dir {args.results_dir}: cannot hold the records folder ({existing} is not a directory)")
    try:  # a folder the records cannot be written under fails now, not after the first run
        tempfile.TemporaryDirectory(dir=existing, prefix=".sgmcmc-probe-").cleanup()
    except OSError as exc:
        parser.error(f"--results-dir {args.results_dir}: cannot create the records folder under {existing} "
                     f"({exc.strerror or exc})")
    try:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks is not None else None
        specs = grid.build_grid(args.suite, args.profile, samplers, args.seeds, sweep=not args.no_sweep,
                                overrides=overrides, tasks=tasks)
    except ValueError as exc:
        parser.error(str(exc))
    if not specs:
        print(f"suite {args.suite!r} has no runs in profile {args.profile!r}")
        return 0
    opts = executors.RunOptions(results_dir=args.results_dir, device=args.device, data_dir=args.data_dir,
                                offline=args.offline, show_progress=True)
    print(f"{args.suite} ({args.profile}): {len(specs)} runs, results in {args.results_dir}/records"
          + (f", {args.jobs} jobs" if args.jobs > 1 else ""), flush=True)
    try:
        summary = executors.execute(specs, opts, jobs=args.jobs, force=args.force, executor=args.executor,
                                    scheduler=args.scheduler, log=lambda m: print(m, file=sys.stderr))
    except executors.TaskNotReady as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except executors.DaskError as exc:  # the dask executor could not start (scheduler unreachable, ...)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.line())
    if summary.interrupted:
        print("interrupted: every finished run has its record; "
              + ("run it again without --force to resume (with --force every run starts over)" if args.force
                 else "run the same command again to resume")
              + (" (runs already started on the dask cluster finish and write their records)"
                 if args.executor == "dask" else ""), file=sys.stderr)
        return 130
    if not args.no_report:
        path = _report(args.results_dir, profile=args.profile)
        if path:
            print(f"leaderboard: {path}")
    return summary.exit_status


def _report(results_dir: str, profile: str | None, plots: bool = True) -> Path | None:
    """The leaderboard of ``results_dir``, each task's columns taken from the tasks."""
    return report.build(results_dir, profile=profile, plots=plots, log=lambda m: print(m, file=sys.stderr),
                        columns=columns.of_tasks(all_tasks().values()))


def cmd_report(args) -> int:
    path = _report(args.results_dir, profile=args.profile, plots=not args.no_plots)
    if path is None:
        return 1
    print(f"leaderboard: {path}")
    return 0


def cmd_compare(args) -> int:
    try:
        result = compare.compare(args.a, args.b, rtol=args.rtol)  # corrupt records: in the report
    except (ValueError, FileNotFoundError) as exc:
        args._parser.error(str(exc))
    print(compare.format_report(result, args.a, args.b, args.rtol, show=args.show))
    if result.compared == 0:
        print("nothing to compare: no run is in both folders", file=sys.stderr)
        return 1
    return 1 if result.differ or result.unreadable_a or result.unreadable_b else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_parser", None) is None:
        args._parser = parser
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
