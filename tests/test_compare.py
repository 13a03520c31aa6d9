"""``python -m benchmarks compare A B``: the reproduction check between two results folders."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import compare, records
from benchmarks.__main__ import main


def _record(task="gauss-iso-100", sampler="sgld", hyper=None, seed=0, status="ok", **metrics):
    spec = records.RunSpec.make(task, sampler, hyper or {"lr": 0.1}, seed, "default")
    base = {"kl": 0.01, "w2": 0.2, "ess_min": 812.0, "ess_per_second": 4000.0, "rhat_max": 1.002}
    return {"key": spec.key, "config": spec.config(), "status": status, "grad_evals": 320_000,
            "wall_time_s": 1.5, "sampling_time_s": 0.4, "metrics": {**base, **metrics},
            "provenance": {"git_commit": "abc123", "versions": {"torch": "2.14.1"}, "device": "cpu"}}


def _folder(tmp_path, name, recs):
    d = tmp_path / name
    for r in recs:
        records.write_record(d, r)
    return d


def test_identical_folders_agree_and_timings_are_left_out(tmp_path, capsys):
    a = _folder(tmp_path, "a", [_record(seed=s) for s in range(3)])
    faster = [_record(seed=s, ess_per_second=9999.0) for s in range(3)]  # a rerun on another machine
    for r in faster:
        r["wall_time_s"] = 0.1
    b = _folder(tmp_path, "b", faster)
    result = compare.compare(a, b)
    assert (result.same, result.differ, result.only_a, result.only_b) == (3, [], [], [])
    assert main(["compare", str(a), str(b)]) == 0
    assert "3 runs in both: 3 agree to the last digit" in capsys.readouterr().out


def test_a_changed_metric_is_named_with_both_values_and_fails(tmp_path, capsys):
    a = _folder(tmp_path, "a", [_record(seed=0), _record(seed=1)])
    b = _folder(tmp_path, "b", [_record(seed=0), _record(seed=1, kl=0.0125)])
    result = compare.compare(a, b)
    assert result.same == 1 and len(result.differ) == 1
    assert result.differ[0].items == [("kl", 0.01, 0.0125)]
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "1 differ" in out and "gauss-iso-100 / sgld (lr=0.1) seed 1 [default]" in out
    assert "kl: A 0.01, B 0.0125 (relative 0.2)" in out


def test_rtol_accepts_small_differences_only(tmp_path):
    a = _folder(tmp_path, "a", [_record(kl=1.0)])
    b = _folder(tmp_path, "b", [_record(kl=1.0 + 1e-9)])
    assert len(compare.compare(a, b).differ) == 1
    assert compare.compare(a, b, rtol=1e-6).same == 1
    c = _folder(tmp_path, "c", [_record(kl=1.01)])
    assert len(compare.compare(a, c, rtol=1e-6).differ) == 1
    with pytest.raises(ValueError, match="rtol=-0.1 is out of range"):
        compare.compare(a, b, rtol=-0.1)


def test_status_nan_inf_and_missing_metrics(tmp_path):
    a = _folder(tmp_path, "a", [_record(seed=0, rhat_max=math.nan), _record(seed=1, rhat_max=math.inf),
                                _record(seed=2), _record(seed=3, extra=1.0)])
    diverged = _record(seed=2, status="diverged")
    b = _folder(tmp_path, "b", [_record(seed=0, rhat_max=math.nan), _record(seed=1, rhat_max=math.inf),
                                diverged, _record(seed=3)])
    result = compare.compare(a, b, rtol=0.5)
    assert result.same == 2  # nan = nan, inf = inf
    by_seed = {d.config["seed"]: d.items for d in result.differ}
    assert by_seed[2] == [("status", "ok", "diverged")]
    assert by_seed[3] == [("extra", 1.0, "(missing)")]


def test_runs_in_one_folder_only_are_listed_not_failed(tmp_path, capsys):
    a = _folder(tmp_path, "a", [_record(seed=s) for s in range(3)])
    b = _folder(tmp_path, "b", [_record(seed=0), _record(sampler="sghmc")])
    result = compare.compare(a, b)
    assert result.same == 1 and len(result.only_a) == 2 and len(result.only_b) == 1
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "2 runs only in A, 1 only in B" in out and "only in B: gauss-iso-100 / sghmc" in out
    c = _folder(tmp_path, "c", [_record(sampler="psgld")])
    assert main(["compare", str(a), str(c)]) == 1  # nothing in both: not a pass
    assert "nothing to compare" in capsys.readouterr().err


def test_a_corrupt_record_is_reported_by_path_and_fails_the_check(tmp_path, capsys):
    """A rerun whose record is corrupt has not reproduced that run: named, counted, exit 1."""
    a = _folder(tmp_path, "a", [_record(), _record(seed=1)])
    b = _folder(tmp_path, "b", [_record()])
    bad = records.records_dir(b) / _record(seed=1)["key"]
    bad = bad.with_suffix(".json")
    bad.write_text("{ not json")
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "1 runs in both: 1 agree" in out and "0 corrupt records in A, 1 in B" in out and str(bad) in out
    cmp = compare.compare(a, b)
    assert cmp.same == 1 and not cmp.differ and len(cmp.unreadable_b) == 1 and not cmp.unreadable_a
    bad.unlink()
    assert main(["compare", str(a), str(b)]) == 0  # a subset that reads cleanly passes


def test_a_folder_without_records_is_a_usage_error(tmp_path, capsys):
    a = _folder(tmp_path, "a", [_record()])
    with pytest.raises(SystemExit) as info:
        main(["compare", str(a), str(tmp_path / "nowhere")])
    assert info.value.code == 2
    assert "no records folder" in capsys.readouterr().err


def test_a_real_rerun_reproduces_its_records(tmp_path, capsys):
    """End to end: the same tiny grid run twice into two folders agrees to the last digit."""
    args = ["run", "toy", "--profile", "quick", "--samplers", "sgld,sghmc", "--seeds", "1", "--tasks",
            "gauss-corr-2d", "--no-sweep", "--no-report"]
    assert main(args + ["--results-dir", str(tmp_path / "a")]) == 0
    assert main(args + ["--results-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "2 runs in both: 2 agree" in capsys.readouterr().out
    path = next(records.records_dir(tmp_path / "b").glob("*.json"))
    rec = json.loads(path.read_text())
    rec["metrics"]["w2"] *= 1.5
    path.write_text(json.dumps(rec))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1


def test_folders_of_different_profiles_name_the_mismatch(tmp_path, capsys):
    a = _folder(tmp_path, "a", [_record()])
    spec = records.RunSpec.make("gauss-iso-100", "sgld", {"lr": 0.1}, 0, "quick")
    quick = {**_record(), "key": spec.key, "config": spec.config()}
    b = _folder(tmp_path, "b", [quick])
    assert main(["compare", str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert "no run is in both" in err
    assert "A holds profile default records and B profile quick" in err and "--profile default" in err


def test_hyperparameters_print_in_six_significant_digits():
    config = records.RunSpec.make("blr", "sghmc", {"lr": 0.003 * 0.1, "friction": 0.1}, 0, "default").config()
    text = compare.describe(config)
    assert "lr=0.0003," in text or text.count("lr=0.0003)") == 1
    assert "00000000" not in text
