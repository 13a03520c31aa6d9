"""scripts/headline_table.py: the README's headline rows come from the leaderboard CSV as written."""

from __future__ import annotations

import pandas as pd

from tests.conftest import load_script


def _load():
    return load_script("headline_table")


def test_headline_rows_carry_the_means_and_the_margin_over_sgd(tmp_path, capsys):
    rows = []
    values = {
        ("sgd", "tuned", "lr=0.3, prior=isotropic", 1.0): dict(error=1.6, nll=0.06, ece=0.003, auroc_entropy=0.88,
                                                              notmnist_confident=0.5, fashion_auroc_entropy=0.87),
        ("sgld", "tuned", "lr=0.3, prior=isotropic", 1.0): dict(error=2.3, nll=0.08, ece=0.009, auroc_entropy=0.95,
                                                               notmnist_confident=0.12, fashion_auroc_entropy=0.91),
        ("sgld", "cold T=0.01", "lr=0.3, prior=isotropic", 0.01): dict(error=1.7, nll=0.061, ece=0.002,
                                                                       auroc_entropy=0.87, notmnist_confident=0.45,
                                                                       fashion_auroc_entropy=0.88),
    }
    for (sampler, variant, hyper, temp), metrics in values.items():
        for metric, mean in metrics.items():
            rows.append(dict(task="mnist-mlp", sampler=sampler, variant=variant, hyperparameters=hyper,
                             temperature=temp, metric=metric, mean=mean, sd=0.0, n_ok=3, n_runs=3))
    rows.append(dict(task="gauss-iso-100", sampler="sgld", variant="tuned", hyperparameters="lr=1", temperature=1.0,
                     metric="kl", mean=0.1, sd=0.0, n_ok=3, n_runs=3))
    csv = tmp_path / "leaderboard.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert _load().main(["--csv", str(csv)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| s")]
    assert lines[1].startswith("| sgd (lr=0.3) | - | 1.60 | 0.060 | 0.0030 | 0.880 |  | 50.0 % | 0.870 |")
    assert lines[2] == "| sgld (lr=0.3) | 1 | 2.30 | 0.080 | 0.0090 | 0.950 | +0.070 | 12.0 % | 0.910 |"
    assert lines[3].startswith("| sgld, cold T=0.01 | 0.01 | 1.70 |") and "| -0.010 |" in lines[3]
    assert len(lines) == 4  # the header and three rows: the toy task is not in the table


def test_a_custom_rows_margin_is_over_the_sgd_row_of_the_same_override(tmp_path, capsys):
    rows = []
    for sampler, variant, auroc in [("sgd", "tuned", 0.90), ("sgd", "custom", 0.80), ("sgld", "custom", 0.85),
                                    ("sgld", "tuned", 0.95)]:
        for metric, mean in dict(error=2.0, nll=0.07, ece=0.005, auroc_entropy=auroc, notmnist_confident=0.3,
                                 fashion_auroc_entropy=0.9).items():
            rows.append(dict(task="mnist-mlp", sampler=sampler, variant=variant, hyperparameters="lr=0.3",
                             temperature=1.0, metric=metric, mean=mean, sd=0.0, n_ok=3, n_runs=3))
    csv = tmp_path / "leaderboard.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert _load().main(["--csv", str(csv)]) == 0
    lines = {l.split(" |")[0]: l for l in capsys.readouterr().out.splitlines() if l.startswith("| s")}
    assert "| +0.050 |" in lines["| sgld (lr=0.3)"]   # 0.95 - tuned sgd's 0.90
    assert "| +0.050 |" in lines["| sgld, custom"]    # 0.85 - custom sgd's 0.80, not the tuned one's
    assert "|  |" in lines["| sgd, custom"]           # an SGD row has no margin over itself


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    import pytest

    toy = tmp_path / "toy.csv"
    pd.DataFrame([dict(task="gauss-iso-100", sampler="sgld", variant="tuned", hyperparameters="lr=1", temperature=1.0,
                       metric="kl", mean=0.1, sd=0.0, n_ok=3, n_runs=3)]).to_csv(toy, index=False)
    summary = tmp_path / "summary.csv"
    pd.DataFrame([dict(sampler="sgld", task="blr", metric="kl", value=1.0, rank=1)]).to_csv(summary, index=False)
    for argv, message in ((["--csv", str(tmp_path / "none.csv")], "cannot read it"),
                          (["--csv", str(toy)], "no MNIST rows for it"),
                          (["--csv", str(summary)], "not a leaderboard.csv")):
        with pytest.raises(SystemExit) as exc:
            _load().main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err
