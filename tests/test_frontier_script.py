"""scripts/frontier.py: the points it builds from records of several studies, and its figure."""

from __future__ import annotations

import pandas as pd

from benchmarks import records
from tests.conftest import load_script

BASE = {"prior": "isotropic", "prior_sd": 1.0}


def _record(task, sampler, hyper, seed, variant="tuned", profile="default", **metrics):
    spec = records.RunSpec.make(task, sampler, {**BASE, **hyper}, seed, profile, variant)
    values = dict(error=2.0, nll=0.08, ece=0.01, auroc_entropy=0.95)
    return {"key": spec.key, "status": "ok", "config": spec.config(), "metrics": {**values, **metrics}}


def test_points_average_distinct_runs_once_and_label_each_protocol():
    mod = load_script("frontier")
    records = [
        # the leaderboard's T = 1 rows, and the temperature study's T = 1 seed 0: the same run, counted once
        _record("mnist-mlp", "sgld", {"lr": 0.3}, 0, error=2.0),
        _record("mnist-mlp", "sgld", {"lr": 0.3}, 1, error=3.0),
        _record("mnist-mlp", "sgld", {"lr": 0.3, "temperature": 1.0}, 0, variant="T=1", error=2.0),
        _record("mnist-mlp", "sgld", {"lr": 0.3, "temperature": 0.1}, 0, variant="T=0.1", error=1.7),
        # the cyclical protocol's own fraction and cycle count (no keys: 0.8 and 4), an ablation of the
        # fraction, and the published 5 cycles
        _record("mnist-mlp-cyclical", "sgld", {"lr": 0.5}, 0, error=1.6, auroc_entropy=0.91),
        _record("mnist-mlp-cyclical", "sgld", {"lr": 0.5, "explore": 0.0}, 0, variant="custom", error=2.2),
        _record("mnist-mlp-cyclical", "sgld", {"lr": 0.5, "cycles": 5}, 0, error=1.5),
        _record("mnist-mlp-cyclical", "sgld", {"lr": 0.5, "cycles": 5.0}, 1, variant="custom", error=1.7),
        _record("mnist-mlp-cyclical", "sgd", {"lr": 0.3}, 0, error=1.9),
        # not points: tuning on validation, another profile, a failed run, a toy task
        _record("mnist-mlp", "sgld", {"lr": 0.3, "evaluate_on": "validation"}, 100, variant="tuning", error=9.0),
        _record("mnist-mlp", "sgld", {"lr": 0.3}, 0, profile="quick", error=9.0),
        {**_record("mnist-mlp", "sgld", {"lr": 0.3}, 2, error=9.0), "status": "failed"},
        _record("gauss-iso-100", "sgld", {"lr": 0.1}, 0, error=9.0),
    ]
    frame = mod.points(records)
    nan = lambda v: None if pd.isna(v) else v  # noqa: E731
    rows = {(r.sampler, r.protocol, nan(r.T), nan(r.cycles), nan(r.explore)): (r.seeds, r.error)
            for r in frame.itertuples()}
    assert rows == {
        ("sgld", "constant", 1.0, None, None): (2, 2.5),
        ("sgld", "constant", 0.1, None, None): (1, 1.7),
        ("sgld", "cyclical", 1.0, 4.0, 0.8): (1, 1.6),
        ("sgld", "cyclical", 1.0, 4.0, 0.0): (1, 2.2),
        ("sgld", "cyclical", 1.0, 5.0, 0.8): (2, 1.6),  # cycles = 5 from the config and 5.0 from --hyper: one point
        ("sgd", "cyclical", None, 4.0, None): (1, 1.9),
    }
    assert "| sgld | cyclical | 1 | 4 | 0.8 | 1 | 1.60 |" in mod.table(frame)


def test_main_reads_several_folders_skips_missing_ones_and_draws_the_figure(tmp_path, capsys):
    mod = load_script("frontier")
    for folder, rec in (("a", _record("mnist-mlp", "sgd", {"lr": 0.3}, 0)),
                        ("b", _record("mnist-mlp-cyclical", "psgld", {"lr": 0.001, "alpha": 0.99}, 0)),
                        ("b", _record("mnist-mlp-cyclical", "psgld", {"lr": 0.001, "alpha": 0.99, "cycles": 5}, 0)),
                        ("b", _record("mnist-mlp-cyclical", "sgd", {"lr": 0.3, "cycles": 5}, 0))):
        records.write_record(tmp_path / folder, rec)
    figure = tmp_path / "frontier.png"
    dirs = ",".join(str(tmp_path / d) for d in ("a", "b", "missing"))
    assert mod.main(["--results-dirs", dirs, "--figure", str(figure)]) == 0
    out, err = capsys.readouterr()
    assert "| psgld | cyclical | 1 | 4 | 0.8 | 1 |" in out and "| sgd | constant | - | - | - | 1 |" in out
    assert "| psgld | cyclical | 1 | 5 | 0.8 | 1 |" in out and "| sgd | cyclical | - | 5 | - | 1 |" in out
    assert "missing: no records folder, skipped" in err
    assert figure.stat().st_size > 1000
    assert mod.main(["--results-dirs", str(tmp_path / "missing"), "--figure", str(figure)]) == 1
