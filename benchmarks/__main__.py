"""python -m benchmarks {list, run, tune, report, compare, data}: the command line (thin: parse, call, exit code).

The work is elsewhere: :mod:`benchmarks.grid` (configs -> run specs), :mod:`benchmarks.executors`
(run them), :mod:`benchmarks.report` (records -> tables and figures), :mod:`benchmarks.compare`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

# Only what parsing needs is imported here: ``--help`` and a bad argument answer in a fraction of a
# second. torch, pandas and the tasks are imported by the command that needs them (cmd_*).
from .data.cli import add_subcommand as add_data_subcommand
from .profiles import PROFILES

EXIT_USAGE = 2
EXIT_FAILURE = 1
#: the most seeds per configuration (each seed is a run: more is a typo, not a study)
MAX_SEEDS = 10_000
#: the most worker processes per core (each run is one process; more only thrash the machine)
MAX_JOBS_PER_CPU = 4


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are two lines (the error, then where help is), not the whole
    usage block before the one useful line."""

    def error(self, message: str):  # noqa: D401 (argparse's signature)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def _positive_int(name: str, maximum: int | None = None):
    def parse(text: str) -> int:
        valid = f"an integer >= 1" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {valid}, got {text!r}") from None
        if value < 1 or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{name} must be {valid}, got {value}")
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
    parser = _Parser(prog="python -m benchmarks", description=(
        "sgmcmc-bench: run SG-MCMC samplers against tasks with known or measurable answers, "
        "and build leaderboard tables from the run records."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,tune,report,compare,data}")

    p_list = sub.add_parser("list", help="list samplers, tasks and suites")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="run a suite (skips runs that already have a record)")
    # the suites are the tasks' (importing them imports torch): checked in cmd_run, not by argparse
    p_run.add_argument("suite", help="which suite: all, toy, mnist, ... (`python -m benchmarks list` names "
                                     "every suite and its tasks)")
    p_run.add_argument("--samplers", default=None,
                       help="comma-separated sampler names or module:Class (default: the built-ins, "
                            "`python -m benchmarks list` names them)")
    p_run.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p_run.add_argument("--seeds", type=_positive_int("--seeds", MAX_SEEDS), default=None,
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
    p_run.add_argument("--tune", action="store_true",
                       help="first tune every selected sampler that has no configured hyperparameters on a task "
                            "(the protocol of `python -m benchmarks tune`), then run with the choices")
    p_run.add_argument("--tuned", default=None, metavar="FILE",
                       help="hyperparameters chosen by `tune`, laid over the published configs (default: "
                            "<results-dir>/tuned.toml when it exists)")
    _data_options(p_run)
    p_run.set_defaults(func=cmd_run, _parser=p_run)  # errors print the ``run`` usage

    p_tune = sub.add_parser(
        "tune", help="choose samplers' step sizes by the one tuning protocol (the same for every sampler)",
        description="Run the tuning protocol (docs/tuning.md) for each selected sampler on each selected task: "
                    "a probe of five whole decades of step size down from the task's largest, then the "
                    "half-decades beside the best, extended until the best is bracketed (at most 9 trials "
                    "each), scored on the task's validation target. Trial records go to <results-dir>/tuning; "
                    "the choices to <results-dir>/tuned.toml, which `run` reads.")
    p_tune.add_argument("suite", help="which suite's tasks: toy, mnist, reference, all, ...")
    p_tune.add_argument("--samplers", default=None,
                        help="comma-separated sampler names or module:Class (default: the built-ins but the "
                             "optimiser baseline)")
    p_tune.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p_tune.add_argument("--jobs", type=_positive_int("--jobs"), default=1, help="parallel worker processes")
    p_tune.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p_tune.add_argument("--results-dir", default="results", help="where tuning/ and tuned.toml go (default: results)")
    p_tune.add_argument("--out", default=None, metavar="FILE", help="where the choices go (default: <results-dir>/tuned.toml)")
    p_tune.add_argument("--plan", action="store_true",
                        help="print the trials the next round would run (using the trials already recorded) and stop")
    _data_options(p_tune)
    p_tune.set_defaults(func=cmd_tune, _parser=p_tune)

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
    import sgmcmc

    from .tasks import all_tasks, suites

    print("samplers:")
    for name in sgmcmc.available():
        try:
            cls = sgmcmc.get(name)
        except (ImportError, ValueError, TypeError) as exc:  # an entry point whose package is missing
            msg = str(exc)
            why = msg[msg.index("Install it with:"):] if "Install it with:" in msg else msg.splitlines()[0][:160]
            print(f"  {name:12s} (cannot be loaded here: {why})")
            continue
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


def _parse_samplers(parser, text: str | None) -> list[str] | None:
    """``--samplers a,b`` -> the names, each resolved (a clear error names a bad one); None if not given."""
    import sgmcmc

    if text is None:
        return None
    samplers = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not samplers:
        parser.error(f"--samplers {text!r} names no sampler; valid: {', '.join(sgmcmc.available())} "
                     f"(or 'module:Class' for your own)")
    for name in samplers:
        try:
            sgmcmc.get(name)
        except sgmcmc.UnknownSamplerError as exc:
            parser.error(f"--samplers: {exc}")
    return samplers


def _tuned_configs(parser, args):
    """The published configs with ``--tuned`` (or ``<results-dir>/tuned.toml``) laid over them."""
    from . import grid, tuning

    origins: dict = {}
    try:
        configs = grid.load_configs(origins=origins)
    except ValueError as exc:
        parser.error(str(exc))
    path = args.tuned or (Path(args.results_dir) / "tuned.toml")
    if args.tuned is None and not Path(path).is_file():
        return configs, origins
    if not Path(path).is_file():
        if getattr(args, "tune", False):  # --tune writes it
            return configs, origins
        parser.error(f"--tuned {args.tuned}: no such file (`python -m benchmarks tune` writes one)")
    try:
        tuned = tuning.read_tuned(path)
        configs = grid.merge_tuned(configs, tuned, path)
    except ValueError as exc:
        parser.error(str(exc))
    origins.update({task: Path(path) for task in tuned})
    print(f"hyperparameters: the published configs, with the tuned entries of {path}", file=sys.stderr)
    return configs, origins


def _tuned_path(args) -> Path:
    """Where ``tune`` writes its choices and ``run`` reads them: ``--out`` (tune), ``--tuned`` (run),
    else ``<results-dir>/tuned.toml``."""
    given = getattr(args, "out", None) or getattr(args, "tuned", None)
    return Path(given) if given else Path(args.results_dir) / "tuned.toml"


def _run_tuning(parser, args, task_names: list[str], samplers: list[str]) -> int:
    """The tuning protocol for ``samplers`` on ``task_names``; writes the choices; 0 if all were chosen."""
    from . import executors, grid, tuning
    from .records import records_dir
    from .tasks import get_task

    out = _tuned_path(args)
    try:
        for name in task_names:
            for sampler in samplers:
                tuning.check_tunable(get_task(name), sampler)
    except ValueError as exc:
        parser.error(str(exc))
    results = Path(args.results_dir).resolve()
    if (out.exists() and not out.is_file()) or out.resolve() in (results, results / "tuning"):
        parser.error(f"--out {out}: not a file (a folder?); give the path of the tuned.toml to write")
    try:  # an existing file is merged into: it must be a valid one, checked before any trial runs
        existing = tuning.read_tuned(out) if out.is_file() else {}
        grid.merge_tuned({}, existing, out)
    except ValueError as exc:
        parser.error(f"{exc} (fix or remove it; `tune` adds its choices to it)")
    _check_folder(parser, out.resolve().parent, f"--out {out}", "the tuned hyperparameters")
    _check_folder(parser, records_dir(Path(args.results_dir).resolve() / "tuning"), f"--results-dir {args.results_dir}",
                  "the tuning records")
    _check_jobs(parser, args.jobs)
    opts = executors.RunOptions(results_dir=str(Path(args.results_dir) / "tuning"), device=args.device,
                                data_dir=args.data_dir, offline=args.offline, show_progress=True)
    executors.check_ready(task_names, opts)

    def execute(specs):
        summary = executors.execute(specs, opts, jobs=args.jobs, log=lambda m: print(m, file=sys.stderr))
        if summary.interrupted:
            raise KeyboardInterrupt

    searches = tuning.tune(task_names, samplers, args.results_dir, execute, plan_only=getattr(args, "plan", False))
    print(tuning.format_searches(searches))
    if getattr(args, "plan", False):
        return 0
    path = tuning.write_tuned(out, searches, existing)
    chosen = sum(s.choice() is not None for s in searches)
    print(f"tuned {chosen} of {len(searches)} (task, sampler) pairs: {path}")
    return 0 if chosen == len(searches) else 1


def _tune_tasks(parser, args) -> list[str]:
    from .tasks import suites, tasks_for

    known = suites()
    if args.suite not in known:
        parser.error(f"argument suite: invalid choice: {args.suite!r} (choose from {', '.join(sorted(known))})")
    names = [t.name for t in tasks_for(args.suite, "default") if t.tune_lr_max is not None]
    if args.tasks is not None:
        wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in names]
        if unknown or not wanted:
            parser.error(f"--tasks {args.tasks!r}: unknown or untunable task(s) {', '.join(unknown) or '(none named)'}; "
                         f"valid for suite {args.suite!r}: {', '.join(names)}")
        names = wanted
    return names


def cmd_tune(args) -> int:
    from . import executors, lineup

    parser = args._parser
    samplers = _parse_samplers(parser, args.samplers) or list(lineup.tuned_samplers())
    try:
        executors.resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    _check_data_dir(parser, args.data_dir)
    names = _tune_tasks(parser, args)
    print(f"tuning {', '.join(samplers)} on {', '.join(names)}; trial records in {args.results_dir}/tuning/records",
          flush=True)
    try:
        return _run_tuning(parser, args, names, samplers)
    except executors.TaskNotReady as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: every finished trial has its record; run the same command again to resume",
              file=sys.stderr)
        return 130


def cmd_run(args) -> int:
    import sgmcmc

    from . import executors, grid
    from .records import records_dir
    from .tasks import suites

    parser = args._parser
    known = suites()
    if args.suite not in known:
        parser.error(f"argument suite: invalid choice: {args.suite!r} (choose from {', '.join(sorted(known))})")
    samplers = _parse_samplers(parser, args.samplers)
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
    _check_data_dir(parser, args.data_dir)
    overrides = dict(args.hyper)
    twice = sorted(k for k, n in Counter(k for k, _ in args.hyper).items() if n > 1)
    if twice:
        parser.error(f"--hyper {', '.join(twice)} given more than once; give each key once (a second value "
                     f"would silently win)")
    cores = _check_jobs(parser, args.jobs)
    _check_writable_folders(parser, args)
    if args.tune and overrides:
        parser.error("--tune with --hyper: the tuning protocol chooses lr itself; give one or the other")
    configs, origins = _tuned_configs(parser, args)
    try:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks is not None else None
        specs = grid.build_grid(args.suite, args.profile, samplers, args.seeds, sweep=not args.no_sweep,
                                overrides=overrides, tasks=tasks, configs=configs, origins=origins)
        if args.tune:
            untuned = [s for s in specs if s.variant == grid.UNTUNED]
            pairs_tasks = list(dict.fromkeys(s.task for s in untuned))
            pairs_samplers = list(dict.fromkeys(s.sampler for s in untuned))
            if untuned:
                status = _run_tuning(parser, args, pairs_tasks, pairs_samplers)
                if status:
                    print("warning: some (task, sampler) pairs found no eligible step; they run untuned",
                          file=sys.stderr)
                # the choices went into --tuned FILE (or <results-dir>/tuned.toml): read them back
                configs, origins = _tuned_configs(parser, argparse.Namespace(**{**vars(args), "tuned": str(_tuned_path(args))}))
                specs = grid.build_grid(args.suite, args.profile, samplers, args.seeds, sweep=not args.no_sweep,
                                        overrides=overrides, tasks=tasks, configs=configs, origins=origins)
            else:
                print("--tune: every selected sampler has configured hyperparameters on every task; nothing to tune",
                      file=sys.stderr)
    except ValueError as exc:
        parser.error(str(exc))
    if not specs:
        print(f"suite {args.suite!r} has no runs in profile {args.profile!r}")
        return 0
    if args.jobs > cores:
        print(f"warning: --jobs {args.jobs} is more than the {cores} core(s) here: the runs share them "
              f"and each takes longer", file=sys.stderr)
    opts = executors.RunOptions(results_dir=args.results_dir, device=args.device, data_dir=args.data_dir,
                                offline=args.offline, show_progress=True)
    print(f"{args.suite} ({args.profile}): {len(specs)} runs, results in {args.results_dir}/records"
          + (f", {args.jobs} jobs" if args.jobs > 1 else ""), flush=True)
    try:
        summary = executors.execute(specs, opts, jobs=args.jobs, force=args.force, executor=args.executor,
                                    scheduler=args.scheduler, log=lambda m: print(m, file=sys.stderr))
    except executors.TaskNotReady as exc:  # every task that cannot run, each reason with its fix
        print(f"error: {exc}", file=sys.stderr)
        print(f"nothing was run: {len(exc.problems)} task(s) of the grid cannot run here "
              f"({', '.join(exc.problems)}); fix the above, or run the others now:", file=sys.stderr)
        if exc.ready:
            print(f"  --tasks {','.join(exc.ready)}", file=sys.stderr)
        else:
            print("  (none: every task of the grid needs what is missing)", file=sys.stderr)
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


def _check_writable_folders(parser: argparse.ArgumentParser, args) -> None:
    """Before any run: every folder the run writes (``records/``, and the results folder, where the
    leaderboard and the figures go, unless ``--no-report``) must take a new file, or its nearest
    existing parent must (the folders are created when the first record is written)."""
    from .records import records_dir

    results = Path(args.results_dir).resolve()
    folders = [records_dir(results)] + ([] if args.no_report else [results])
    for folder in folders:
        what = "the records folder" if folder.name == "records" else "the leaderboard"
        _check_folder(parser, folder, f"--results-dir {args.results_dir}", what,
                      hint="choose a folder you can write, e.g. --results-dir ./my-results")


def _check_folder(parser, folder: Path, option: str, what: str, hint: str = "choose a folder you can write") -> None:
    """``folder`` (created when the first file is written) or its nearest existing parent must be a
    directory that takes a new file; else a usage error naming ``option``."""
    from .records import WriteError, check_writable

    existing = next(q for q in (folder, *folder.parents) if q.exists())
    if not existing.is_dir():
        parser.error(f"{option}: cannot hold {what} ({existing} is not a directory)")
    try:
        check_writable(existing)
    except WriteError as exc:
        verb = "write into" if existing == folder else f"create {folder} under"
        parser.error(f"{option}: cannot {verb} {existing} ({exc.strerror}); {hint}")


def _check_jobs(parser, jobs: int) -> int:
    """``--jobs`` at most MAX_JOBS_PER_CPU per core; returns the core count."""
    cores = os.cpu_count() or 1
    if jobs > MAX_JOBS_PER_CPU * cores:
        parser.error(f"--jobs {jobs}: at most {MAX_JOBS_PER_CPU * cores} ({MAX_JOBS_PER_CPU} x the {cores} "
                     f"core(s) here); each job is a process running one run")
    return cores


def _check_data_dir(parser, data_dir: str | None) -> None:
    if data_dir is not None and not Path(data_dir).is_dir():
        parser.error(f"--data-dir {data_dir}: no such directory (see `python -m benchmarks data` for where "
                     f"each dataset is looked for)")


def _report(results_dir: str, profile: str | None, plots: bool = True) -> Path | None:
    """The leaderboard of ``results_dir``, each task's columns taken from the tasks."""
    from . import columns, report
    from .tasks import all_tasks

    return report.build(results_dir, profile=profile, plots=plots, log=lambda m: print(m, file=sys.stderr),
                        columns=columns.of_tasks(all_tasks().values()))


def cmd_report(args) -> int:
    path = _report(args.results_dir, profile=args.profile, plots=not args.no_plots)
    if path is None:
        return 1
    print(f"leaderboard: {path}")
    return 0


def cmd_compare(args) -> int:
    from . import compare

    try:
        result = compare.compare(args.a, args.b, rtol=args.rtol)  # corrupt records: in the report
    except (ValueError, FileNotFoundError) as exc:
        args._parser.error(str(exc))
    print(compare.format_report(result, args.a, args.b, args.rtol, show=args.show))
    if result.compared == 0:
        print(result.nothing_in_both(), file=sys.stderr)
        return 1
    return 1 if result.differ or result.unreadable_a or result.unreadable_b else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_parser", None) is None:
        args._parser = parser
    try:
        return args.func(args)
    except OSError as exc:  # a file the suite could not write (disk full, permission lost): one line, exit 1;
        # every record finished before is intact (atomic_write). Checked by name: records imports torch.
        records = sys.modules.get(f"{__package__}.records")
        if records is None or not isinstance(exc, records.WriteError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
