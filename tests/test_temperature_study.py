"""scripts/temperature_study.py: the grid it asks for, and the table and figure it builds from records."""

from __future__ import annotations

import pytest

from tests.conftest import load_script


def _load():
    return load_script("temperature_study")


CONFIGS = {"mnist-mlp": {"prior": "isotropic", "prior_sd": 1.0, "sgd": {"lr": 0.3}, "sgld": {"lr": 0.3},
                         "psgld": {"lr": 0.001, "alpha": 0.99}}}


def test_the_grid_is_sgd_plus_every_sampler_at_every_temperature_at_its_tuned_step():
    mod = _load()
    specs = mod.build_specs(["sgld", "psgld"], [1.0, 0.1], seeds=2, configs=CONFIGS)
    assert len(specs) == 2 + 2 * 2 * 2
    sgd = [s for s in specs if s.sampler == "sgd"]
    assert [s.seed for s in sgd] == [0, 1] and "temperature" not in sgd[0].hyper_dict
    psgld_cold = [s for s in specs if s.sampler == "psgld" and s.hyper_dict["temperature"] == 0.1]
    assert [s.variant for s in psgld_cold] == ["T=0.1", "T=0.1"]
    assert psgld_cold[0].hyper_dict == {"prior": "isotropic", "prior_sd": 1.0, "lr": 0.001, "alpha": 0.99,
                                        "temperature": 0.1}
    assert len({s.key for s in specs}) == len(specs)


def _record(spec, **metrics):
    base = dict(error=2.0, nll=0.08, ece=0.01, auroc_entropy=0.95, notmnist_confident=0.1)
    return {"key": spec.key, "status": "ok", "config": spec.config(), "metrics": {**base, **metrics}}


def test_summary_table_and_figure_average_the_seeds_and_skip_other_records(tmp_path):
    mod = _load()
    specs = mod.build_specs(["sgld"], [1.0, 0.01], seeds=2, configs=CONFIGS)
    records = []
    for s in specs:
        t = s.hyper_dict.get("temperature")
        err = 1.7 if s.sampler == "sgd" else (2.2 if t == 1.0 else 1.8) + 0.1 * s.seed
        records.append(_record(s, error=err))
    records[-1] = {**records[-1], "status": "diverged"}  # sgld T=0.01 seed 1: not averaged
    other = mod.build_specs(["sgld"], [0.5], seeds=1, configs=CONFIGS)[-1]
    records.append(_record(other, error=9.9))  # not asked for: ignored
    summary = mod.summarize(records, {s.key for s in specs})
    rows = {(r.sampler, r.T if r.sampler != "sgd" else None): r for r in summary.itertuples()}
    assert rows[("sgld", 1.0)].error == pytest.approx(2.25) and rows[("sgld", 1.0)].seeds == 2
    assert rows[("sgld", 0.01)].error == pytest.approx(1.8) and rows[("sgld", 0.01)].seeds == 1
    assert rows[("sgd", None)].error == pytest.approx(1.7)
    assert 0.5 not in set(summary["T"])
    lines = mod.table(summary, ["sgld"]).splitlines()
    assert lines[2].startswith("| sgd | - | 2 | 1.70 |")
    assert lines[3].startswith("| sgld | 1 | 2 | 2.25 |") and lines[4].startswith("| sgld | 0.01 | 1 | 1.80 |")
    path = mod.plot(summary, ["sgld"], tmp_path / "t.png")
    assert path.stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["--temperatures", "1,-0.5"], "every temperature must be finite and >= 0"),
    (["--temperatures", "1,x"], "expected comma-separated numbers"),
    (["--samplers", "sgld,nope"], "nope not studied; valid: sgld, psgld, sghmc, underdamped"),
    (["--seeds", "0"], "--seeds=0"),
])
def test_bad_arguments_exit_2_naming_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _load().main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, drawn, interrupted, code", [
    ([], "results/mnist-mlp_temperature.png", False, 0),  # the whole default grid: the published figure
    (["--samplers", "psgld", "--temperatures", "0.03,0.01,0", "--seeds", "3"], None, False, 0),  # a part: left alone
    (["--samplers", "psgld", "--figure", "psgld.png"], "psgld.png", False, 0),  # asked for: drawn there
    (["--profile", "quick"], None, False, 0),  # another profile's runs: not the published figure
    (["--results-dir", "elsewhere"], None, False, 0),  # another folder's runs: neither
    ([], None, True, 130),  # Ctrl-C: a part of the grid, no figure at all
])
def test_a_subset_run_does_not_overwrite_the_published_figure(argv, drawn, interrupted, code, tmp_path, monkeypatch,
                                                              capsys):
    mod = _load()
    monkeypatch.chdir(tmp_path)
    asked = []

    class Done(mod.executors.GridSummary):
        def line(self):
            return "0 runs"

    def execute(specs, opts, **kw):  # no training here: every run is 'recorded' already
        asked.extend(specs)
        return Done(interrupted=interrupted)

    monkeypatch.setattr(mod.executors, "execute", execute)
    monkeypatch.setattr(mod.records, "load_records", lambda d: [_record(s) for s in asked])
    drawn_at = []
    monkeypatch.setattr(mod, "plot", lambda summary, samplers, path: drawn_at.append(str(path)) or path)
    assert mod.main(argv) == code
    assert drawn_at == ([drawn] if drawn else [])
    if drawn is None:
        err = capsys.readouterr().err
        assert ("no figure drawn" if interrupted else "not redrawn") in err
