"""The tuning protocol (benchmarks.tuning, ``python -m benchmarks tune``) and how its rows are labelled."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import frame, grid, tuning
from benchmarks.__main__ import main
from benchmarks.tasks import gaussian
from benchmarks.tasks.base import ladder_rung

#: a default profile small enough for a search to run in seconds
TINY_DEFAULT = dict(chains=8, steps=600, burn_in=150, thin=3, sweep_points=3)


def simulate(best_lr: float, unstable_above: float, anchor: float = 10.0, width: float = 1.0):
    """Run the protocol's search against a synthetic score: (log10 lr - log10 best)^2, diverging
    above ``unstable_above``; returns the finished search."""
    search = tuning.Search("t", "s", {}, anchor)
    for _ in range(20):
        rungs = search.next_rungs()
        if not rungs:
            break
        for lr in rungs:
            if lr > unstable_above:
                search.trials[lr] = tuning.Trial(lr, "diverged")
            else:
                score = (math.log10(lr) - math.log10(best_lr)) ** 2 / width
                search.trials[lr] = tuning.Trial(lr, "ok", score, True)
    return search


def test_ladder_rungs():
    assert ladder_rung(0.25) == 0.3 and ladder_rung(0.3) == 0.3 and ladder_rung(0.31) == 1.0
    assert ladder_rung(0.25, up=False) == 0.1 and ladder_rung(7.0, up=False) == 3.0
    assert tuning.rung_below(0.3) == 0.1 and tuning.rung_below(0.1) == 0.03 and tuning.rung_above(0.03) == 0.1


@pytest.mark.parametrize("best", [3.0, 0.3, 0.03, 0.003, 3e-4, 1e-4])
def test_the_search_finds_the_best_rung_within_the_budget(best):
    search = simulate(best, unstable_above=10.0 if best >= 3.0 else best * 30)
    assert search.best().lr == pytest.approx(best)
    assert search.bracketed(), search.trials
    assert len(search.ran()) <= tuning.MAX_TRIALS


def test_a_sampler_ten_times_slower_is_found_within_the_same_budget():
    """The fairness property: a sampler whose best step is 10x below another's is found as surely,
    bracketed, within the same budget (the probe spans four decades whatever the sampler)."""
    fast, slow = simulate(0.003, unstable_above=0.1), simulate(0.0003, unstable_above=0.01)
    assert fast.best().lr == 0.003 and slow.best().lr == 0.0003
    assert fast.bracketed() and slow.bracketed()
    assert len(fast.ran()) == 7 and len(slow.ran()) == 8 <= tuning.MAX_TRIALS


def test_the_search_goes_up_when_the_anchor_is_best():
    search = simulate(30.0, unstable_above=1e9, anchor=10.0)
    assert search.best().lr == 30.0 and search.bracketed()


def test_the_search_stops_at_the_budget_when_nothing_is_eligible():
    search = tuning.Search("t", "s", {}, 1.0)
    for _ in range(20):
        rungs = search.next_rungs()
        if not rungs:
            break
        for lr in rungs:
            search.trials[lr] = tuning.Trial(lr, "ok", 1.0, False)  # never converged
    assert search.choice() is None and len(search.ran()) == tuning.MAX_TRIALS and search.reason == "budget spent"


def test_tuned_file_round_trips_and_runs_read_it(tmp_path):
    search = simulate(0.003, unstable_above=0.1)
    search.task, search.sampler, search.fixed = "blr", "mypkg:Sampler", {"friction": 0.2}
    path = tuning.write_tuned(tmp_path / "tuned.toml", [search], existing={"gauss-iso-100": {"x:Y": {"lr": 0.1}}})
    tuned = tuning.read_tuned(path)
    assert tuned["blr"]["mypkg:Sampler"]["lr"] == 0.003 and tuned["blr"]["mypkg:Sampler"]["friction"] == 0.2
    assert tuned["blr"]["mypkg:Sampler"]["tuning"].startswith("ladder-v1: 7 trials, validation kl")
    assert tuned["gauss-iso-100"]["x:Y"] == {"lr": 0.1}  # other entries are kept
    configs = grid.merge_tuned(grid.load_configs(), tuned)
    hyper, variant, note = grid.row_for(configs["blr"], "mypkg:Sampler")
    assert (hyper["lr"], variant) == (0.003, "tuned") and note.startswith("ladder-v1")
    # a sampler with no entry: sgld's lr, labelled untuned
    hyper, variant, note = grid.row_for(configs["blr"], "other:Sampler")
    assert hyper["lr"] == configs["blr"]["sgld"]["lr"] and variant == grid.UNTUNED and "untuned" in note
    # the published entries say how they were tuned; tuning is not a hyperparameter
    hyper, variant, note = grid.row_for(configs["blr"], "sghmc")
    assert "tuning" not in hyper and variant == "tuned" and note.startswith("ladder-v1")


def test_a_bad_tuned_file_is_named(tmp_path):
    bad = tmp_path / "tuned.toml"
    bad.write_text("[blr\n")
    with pytest.raises(ValueError, match="tuned hyperparameters .*tuned.toml"):
        tuning.read_tuned(bad)


def test_a_sampler_without_noise_is_not_tuned_on_a_toy():
    from benchmarks.tasks import get_task

    with pytest.raises(ValueError, match="adds no noise"):
        tuning.check_tunable(get_task("blr"), "sgd")


def test_toy_replicate_is_another_target_of_the_same_family():
    task = gaussian.BayesianLinearRegression()
    twin = task.replicate(1)
    assert twin.target_seed != task.target_seed and task.replicate(0) is task
    assert twin.target.dim == task.target.dim
    assert not bool((twin.target.mean == task.target.mean).all())
    with pytest.raises(ValueError, match="replicate=-1 is out of range"):
        task.check_task_keys({"replicate": -1})


def test_tune_end_to_end_then_run_reads_the_choice(tmp_path, monkeypatch, capsys):
    """``tune`` on a plug-in sampler (a class path, so not a built-in) writes trial records and a
    tuned.toml; ``run`` then uses the choice and labels the row with the protocol."""
    monkeypatch.setitem(gaussian.TOY_PROFILES, "default", TINY_DEFAULT)
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", TINY_DEFAULT)
    plugin = "sgmcmc.sghmc:SGHMC"
    rc = main(["tune", "toy", "--tasks", "gauss-corr-2d", "--samplers", plugin, "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    tuned = tuning.read_tuned(tmp_path / "tuned.toml")
    chosen = tuned["gauss-corr-2d"][plugin]["lr"]
    trials = list((tmp_path / "tuning" / "records").glob("*.json"))
    assert 5 <= len(trials) <= tuning.MAX_TRIALS
    assert all(json.loads(p.read_text())["config"]["hyper"]["replicate"] == 1 for p in trials)
    assert f"-> lr {chosen:g}" in out
    rc = main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", plugin, "--seeds", "1",
               "--no-sweep", "--results-dir", str(tmp_path)])
    assert rc == 0
    rec = next(json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json"))
    assert rec["config"]["hyper"]["lr"] == chosen and rec["config"]["variant"] == "tuned"
    assert rec["tuning"].startswith("ladder-v1")
    board = (tmp_path / "leaderboard.md").read_text()
    assert "ladder-v1" in board and "friction=0.1" in board  # the sampler's default shows too


def test_untuned_rows_are_marked_in_the_summary(tmp_path, monkeypatch):
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", TINY_DEFAULT)
    rc = main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld,sgmcmc.sghmc:SGHMC",
               "--seeds", "1", "--no-sweep", "--results-dir", str(tmp_path)])
    assert rc == 0
    board = (tmp_path / "leaderboard.md").read_text()
    assert "sgmcmc.sghmc:SGHMC [untuned]" in board and "default lr (untuned)" in board


def test_tuning_label():
    assert frame.tuning_label("untuned", "") == "default lr (untuned)"
    assert frame.tuning_label("custom", "--hyper") == "custom (--hyper)"
    assert frame.tuning_label("tuned", "ladder-v1: 7 trials") == "ladder-v1: 7 trials"


def test_run_tune_tunes_what_has_no_entry_then_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(gaussian.TOY_PROFILES, "default", TINY_DEFAULT)
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", TINY_DEFAULT)
    plugin = "sgmcmc.sghmc:SGHMC"
    rc = main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", f"sgld,{plugin}",
               "--seeds", "1", "--no-sweep", "--tune", "--results-dir", str(tmp_path)])
    assert rc == 0
    tuned = tuning.read_tuned(tmp_path / "tuned.toml")
    assert list(tuned["gauss-corr-2d"]) == [plugin]  # sgld has a published entry: not tuned again
    recs = {json.loads(p.read_text())["config"]["sampler"]: json.loads(p.read_text())
            for p in (tmp_path / "records").glob("*.json")}
    assert recs[plugin]["config"]["variant"] == "tuned" and recs[plugin]["tuning"].startswith("ladder-v1")
    assert recs[plugin]["config"]["hyper"]["lr"] == tuned["gauss-corr-2d"][plugin]["lr"]
    with pytest.raises(SystemExit):  # --tune and --hyper contradict each other
        main(["run", "toy", "--tasks", "gauss-corr-2d", "--tune", "--hyper", "lr=0.1", "--results-dir", str(tmp_path)])
    assert "--tune with --hyper" in capsys.readouterr().err


def _record(sampler, variant, seed, kl, temperature=1.0, peer=None):
    hyper = {"lr": 0.01, **({"temperature": temperature} if temperature != 1.0 else {})}
    prov = {"sampler": {"hypers": {"lr": 0.01, "temperature": temperature}, **({"peer": peer} if peer else {})}}
    return {"key": f"{sampler}{variant}{seed}", "status": "ok", "metrics": {"kl": kl}, "wall_time_s": 1.0, "grad_evals": 10,
            "provenance": prov, "config": {"task": "blr", "sampler": sampler, "hyper": hyper, "seed": seed,
                                           "profile": "default", "variant": variant}}


def test_the_summary_ranks_labelled_rows_at_t1_and_never_tempered_ones():
    from benchmarks import columns, report
    from benchmarks.tasks import all_tasks

    recs = [_record("sgld", "tuned", s, 1.6) for s in range(2)]
    recs += [_record("sgld", "+cv", s, 0.03) for s in range(2)]
    recs += [_record("sgld", "cold T=0.01", s, 0.01, temperature=0.01) for s in range(2)]
    recs += [_record("posteriors-sgld", "tuned", s, 1.6, peer={"library": "posteriors", "version": "0.1.3"})
             for s in range(2)]
    summary, numeric = report.summary_table(report.records_frame(recs), columns.of_tasks(all_tasks().values()))
    rows = set(summary.sampler)
    assert "sgld [+cv]" in rows and "sgld" in rows and "posteriors-sgld (posteriors 0.1.3)" in rows
    assert not any("cold" in r for r in rows)
    assert numeric[numeric.sampler == "sgld [+cv]"]["rank"].iloc[0] == 1


def test_tune_refuses_a_bad_existing_file_or_a_folder_before_any_trial(tmp_path, capsys):
    bad = tmp_path / "tuned.toml"
    bad.write_text("[gauss-corr-2d\nsgld = {lr=1}\n")
    for out in (bad, tmp_path, tmp_path / "new" / "tuning"):  # a file, a folder, the trial folder to be
        results = tmp_path / "new" if out.name == "tuning" else tmp_path
        with pytest.raises(SystemExit) as exc:
            main(["tune", "toy", "--tasks", "gauss-corr-2d", "--samplers", "sgnht", "--results-dir", str(results),
                  "--out", str(out)])
        assert exc.value.code == 2
        assert str(out) in capsys.readouterr().err
    assert not (tmp_path / "tuning").exists()  # nothing ran


@pytest.mark.parametrize("text, needle", [
    ("foo = 1\n", "foo = 1 is not a table"),
    ("[nosuchtask]\nsgld = { lr = 0.1 }\n", "[nosuchtask] is not a task"),
    ("[blr]\nsgld = 0.01\n", "sgld = 0.01 is not a table"),
    ("[blr]\nsgld = { lr = 0.01, tuning = 5 }\n", "sgld.tuning = 5"),
])
def test_a_malformed_tuned_file_is_named_with_its_bad_entry(tmp_path, text, needle):
    path = tmp_path / "tuned.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as exc:
        grid.merge_tuned(grid.load_configs(), tuning.read_tuned(path), path)
    assert str(path) in str(exc.value) and needle in str(exc.value)


def test_sampler_names_that_toml_cannot_take_bare_are_quoted(tmp_path):
    search = simulate(0.003, unstable_above=0.1)
    search.task, search.sampler = "blr", "sgld-é"
    assert tuning.read_tuned(tuning.write_tuned(tmp_path / "t.toml", [search]))["blr"]["sgld-é"]["lr"] == 0.003


def test_two_configurations_of_one_sampler_on_a_task_are_ranked_apart():
    from benchmarks import columns, report
    from benchmarks.tasks import all_tasks

    recs = [_record("x:Y", "tuned", 0, 1.0), _record("x:Y", "tuned", 1, 3.0)]
    recs[1]["config"]["hyper"]["lr"] = 0.001
    summary, _ = report.summary_table(report.records_frame(recs), columns.of_tasks(all_tasks().values()))
    assert set(summary.sampler) == {"x:Y [lr=0.001]", "x:Y [lr=0.01]"}


def test_run_tune_with_tuned_file_keeps_its_entries_and_adds_to_it(tmp_path, monkeypatch):
    monkeypatch.setitem(gaussian.TOY_PROFILES, "default", TINY_DEFAULT)
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", TINY_DEFAULT)
    mine = tmp_path / "mine.toml"
    mine.write_text('[gauss-corr-2d]\n"sgmcmc.sgnht:SGNHT" = { lr = 0.003, tuning = "by hand" }\n')
    rc = main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers",
               "sgmcmc.sgnht:SGNHT,sgmcmc.sghmc:SGHMC", "--seeds", "1", "--no-sweep", "--tune", "--tuned", str(mine),
               "--results-dir", str(tmp_path)])
    assert rc == 0
    tuned = tuning.read_tuned(mine)["gauss-corr-2d"]
    assert tuned["sgmcmc.sgnht:SGNHT"]["lr"] == 0.003 and "sgmcmc.sghmc:SGHMC" in tuned  # kept, and added to
    recs = {json.loads(p.read_text())["config"]["sampler"]: json.loads(p.read_text())
            for p in (tmp_path / "records").glob("*.json")}
    assert recs["sgmcmc.sgnht:SGNHT"]["config"]["hyper"]["lr"] == 0.003
    assert recs["sgmcmc.sgnht:SGNHT"]["tuning"] == "by hand" and recs["sgmcmc.sghmc:SGHMC"]["config"]["variant"] == "tuned"
