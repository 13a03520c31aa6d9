"""Faults found by an audit, each reproduced: a full disk, an unwritable results folder, an edited
record, a record path that is a FIFO or /dev/zero, a plugin that raises on import, bad values in a
config file, hyperparameters, seeds and jobs out of bounds, and a saturated MNIST network."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import sgmcmc
from benchmarks import executors, grid, records
from benchmarks.__main__ import main
from benchmarks.tasks import gaussian
from benchmarks.tasks.base import Diverged, RunContext

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(chains=4, steps=400, burn_in=100, thin=5)


@pytest.fixture
def tiny_profile(monkeypatch):
    """The quick profile shrunk to a few hundred steps so a grid runs in seconds."""
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", TINY)


def run_toy(results: Path, *args: str) -> int:
    return main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld",
                 "--no-sweep", "--results-dir", str(results), *args])


def usage_error(capsys, argv: list[str]) -> str:
    """Run the CLI expecting exit 2; returns stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- 8: disk full
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
@pytest.mark.parametrize("fail_on", ["record", "figure"])
def test_a_full_disk_ends_with_one_line_naming_the_path_and_exit_1(tmp_path, tiny_profile, monkeypatch, capsys,
                                                                   code, fail_on):
    real_replace = os.replace
    written = []

    def replace(src, dst, *a, **kw):
        dst = Path(dst)
        # the second record (a run finished before it keeps its record), or the first figure
        if (fail_on == "record" and dst.suffix == ".json" and written) or (fail_on == "figure" and dst.suffix == ".png"):
            raise OSError(code, os.strerror(code))
        if dst.suffix == ".json":
            written.append(dst)
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    if fail_on == "figure":  # with the sweep, whose figure the report draws
        rc = main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld",
                   "--results-dir", str(tmp_path), "--seeds", "1"])
    else:
        rc = run_toy(tmp_path, "--seeds", "2")
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "cannot write" in line]
    assert len(lines) == 1, err
    assert os.strerror(code) in lines[0]
    assert (".json" if fail_on == "record" else ".png") in lines[0] and str(tmp_path) in lines[0]
    # every finished record is intact, and no temporary file is left behind
    assert written
    for path in written:
        assert records.read_record(path)["status"] in ("ok", "diverged")
    assert not list(tmp_path.rglob("*.tmp"))


def test_every_writer_goes_through_atomic_write():
    """No file of benchmarks/ or scripts/ writes a file but through records.atomic_write."""
    import re

    pattern = re.compile(r"""open\(.*["']w|\.write_text\(|\.write_bytes\(|\.savefig\(\s*(?!buffer)|\.to_csv\(\s*[^)i]""")
    offenders = []
    for folder in ("benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "records.py" and folder == "benchmarks":  # atomic_write itself
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and "atomic_write" not in line and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# --------------------------------------------------------------------------- 9: unwritable results folder
def test_a_results_folder_that_cannot_be_written_is_refused_before_any_run(tmp_path, tiny_profile, monkeypatch,
                                                                          capsys):
    results = tmp_path / "res"
    (results / "records").mkdir(parents=True)
    results.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes through chmod: make the kernel's refusal explicit
            real_open, real_mkdir = os.open, os.mkdir
            denied = str(results.resolve())

            def refuse(path):
                if os.path.dirname(os.path.abspath(os.fspath(path))) == denied:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

            monkeypatch.setattr(os, "open", lambda p, *a, **kw: (refuse(p), real_open(p, *a, **kw))[1])
            monkeypatch.setattr(os, "mkdir", lambda p, *a, **kw: (refuse(p), real_mkdir(p, *a, **kw))[1])
        err = usage_error(capsys, ["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d",
                                   "--samplers", "sgld", "--no-sweep", "--results-dir", str(results)])
        assert str(results) in err and "cannot" in err
        assert not list((results / "records").iterdir())  # nothing ran
    finally:
        results.chmod(0o755)


# --------------------------------------------------------------------------- 10: edited records
def test_an_edited_record_is_named_left_out_and_rerun(tmp_path, tiny_profile, capsys):
    assert run_toy(tmp_path, "--seeds", "1") == 0
    (path,) = (tmp_path / "records").glob("*.json")
    rec = json.loads(path.read_text())
    assert len(rec["digest"]) == 64
    rec["metrics"]["kl"] = 1e-9  # a better number, typed in
    path.write_text(json.dumps(rec, indent=1, sort_keys=True))
    capsys.readouterr()
    assert main(["report", "--results-dir", str(tmp_path)]) == 1  # its only record left out
    err = capsys.readouterr().err
    assert str(path) in err and "digest" in err
    assert run_toy(tmp_path, "--seeds", "1") == 0
    out = capsys.readouterr()
    assert "0 already recorded" in out.out and str(path) in out.err
    assert records.read_record(path)["metrics"]["kl"] != 1e-9


def test_a_record_without_a_digest_is_accepted_as_legacy(tmp_path):
    spec = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 0, "quick")
    path = records.write_record(tmp_path, {"key": spec.key, "config": spec.config(), "status": "ok",
                                           "metrics": {"kl": 0.5, "w2": float("inf")}, "wall_time_s": 1.0})
    assert records.read_record(path)["metrics"]["kl"] == 0.5
    rec = json.loads(path.read_text())
    del rec["digest"]
    path.write_text(json.dumps(rec))
    assert records.read_record(path)["metrics"]["w2"] == float("inf")
    published = sorted((ROOT / "results" / "records").glob("*.json"))[:20]
    for p in published:  # the published records have no digest and are still read
        records.read_record(p)


# --------------------------------------------------------------------------- 11: FIFO, /dev/zero, huge files
def _read_with_timeout(path: Path, timeout: float = 5.0):
    box: dict = {}

    def target():
        try:
            box["value"] = records.read_record(path)
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():  # unblock the reader of a FIFO before failing
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail(f"reading {path} hung for {timeout} s")
    return box


def test_a_record_that_is_a_fifo_is_named_not_waited_on(tmp_path, tiny_profile, capsys):
    spec = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 0, "quick")
    path = records.record_path(tmp_path, spec)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    box = _read_with_timeout(path)
    assert isinstance(box.get("error"), records.RecordError) and "not a regular file" in str(box["error"])
    assert str(path) in str(box["error"])


def test_a_record_symlinked_to_dev_zero_is_refused(tmp_path):
    path = tmp_path / "records" / "a.json"
    path.parent.mkdir()
    path.symlink_to("/dev/zero")
    with pytest.raises(records.RecordError, match="not a regular file"):
        records.read_record(path)


def test_a_record_file_over_the_size_cap_is_refused_naming_the_cap(tmp_path):
    path = tmp_path / "records" / "big.json"
    path.parent.mkdir()
    with open(path, "wb") as fh:  # sparse: takes no disk
        fh.truncate(records.MAX_RECORD_BYTES + 1)
    with pytest.raises(records.RecordError, match="64 MB"):
        records.read_record(path)


# --------------------------------------------------------------------------- 12: plugins that raise
@pytest.mark.parametrize("source, needle", [
    ("raise RuntimeError('plugin is broken')\n", "RuntimeError: plugin is broken"),
    ("def f(:\n", "SyntaxError"),
])
def test_a_plugin_that_raises_on_import_exits_2_naming_the_module(tmp_path, monkeypatch, capsys, source, needle):
    name = f"faulty_plugin_{abs(hash(source)) % 10_000}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    err = usage_error(capsys, ["run", "toy", "--samplers", f"{name}:Sampler", "--results-dir", str(tmp_path / "r")])
    assert name in err and needle in err
    sys.modules.pop(name, None)


# --------------------------------------------------------------------------- 13: config values
@pytest.mark.parametrize("value, needle", [('"fast"', "fast"), ("-0.1", "-0.1"), ("1e300", "float32")])
def test_a_bad_value_in_a_config_file_exits_2_naming_file_table_and_key(tmp_path, monkeypatch, capsys, value, needle):
    configs = tmp_path / "configs"
    shutil.copytree(grid.CONFIG_DIR, configs)
    toy = configs / "toy.toml"
    text = toy.read_text()
    old = '[gauss-corr-2d]\nsweep = [0.1, 0.316, 1.0, 3.16, 10.0]\nsgd = { lr = 0.01, tuning = "baseline: sgld\'s lr" }\nsgld = { lr = 0.01,'
    assert old in text
    toy.write_text(text.replace(old, old.replace("sgld = { lr = 0.01,", f"sgld = {{ lr = {value},")))
    monkeypatch.setattr(grid, "CONFIG_DIR", configs)
    results = tmp_path / "r"
    err = usage_error(capsys, ["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld",
                               "--results-dir", str(results)])
    assert str(toy) in err and "[gauss-corr-2d]" in err and "sgld" in err and "lr" in err and needle in err
    assert not results.exists()


# --------------------------------------------------------------------------- 14: bounds
@pytest.mark.parametrize("hyper, needle", [
    (["lr=1e308"], "float32"),
    (["lr=1e38", "temperature=100"], "noise"),
])
def test_a_hyperparameter_not_representable_in_float32_is_refused(tmp_path, capsys, hyper, needle):
    argv = ["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld",
            "--results-dir", str(tmp_path)]
    for h in hyper:
        argv += ["--hyper", h]
    err = usage_error(capsys, argv)
    assert needle in err and "lr" in err
    assert not (tmp_path / "records").exists()


def test_seeds_are_bounded(tmp_path, capsys):
    err = usage_error(capsys, ["run", "toy", "--seeds", "99999999999999999999", "--results-dir", str(tmp_path)])
    assert "--seeds" in err and "10000" in err and len(err.strip().splitlines()) <= 2


def test_jobs_are_capped_and_more_than_the_cores_warns(tmp_path, monkeypatch, capsys):
    cores = os.cpu_count() or 1
    err = usage_error(capsys, ["run", "toy", "--jobs", "1000", "--results-dir", str(tmp_path)])
    assert "--jobs" in err and str(4 * cores) in err
    monkeypatch.setattr(executors, "execute", lambda *a, **kw: executors.GridSummary(total=0))
    assert main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld",
                 "--no-sweep", "--no-report", "--jobs", str(cores + 1), "--results-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "--jobs" in line]
    assert len(warnings) == 1 and str(cores) in warnings[0], err


# --------------------------------------------------------------------------- 15: a saturated MNIST network
class _Saturating(sgmcmc.Sampler):
    """Stands in for a step size that blows the MLP's weights up: a saturated network (every softmax
    one-hot, entropy 0) that calls almost every input one class (3), the bars of class 0 aside."""

    def _update(self, group, params, grads):
        w1, b1, w2, b2, w3, b3 = params
        for p in params:
            p.zero_()
        w1[0].view(28, 28)[2:4, 4:24] = 1e3  # unit 0 reads the bar of class 0
        b1[0] = -1e4  # and not the noise
        w2[0, 0] = 1.0
        w3[0, 0] = 1e3
        b3[3] = 100.0  # every other input: class 3, by a margin whose softmax is one-hot


def test_a_saturated_network_is_diverged_not_ok(tmp_path, monkeypatch):
    from tests.test_mnist_task import tiny_record, tiny_task

    with pytest.raises(Diverged) as exc:
        tiny_task().run(_Saturating, {"lr": 0.1}, RunContext(seed=0, profile="quick"))
    assert exc.value.reason.startswith("saturated:"), exc.value.reason
    assert exc.value.step == 22  # the first kept sample

    monkeypatch.setattr(sys.modules[__name__], "_Saturating", _Saturating, raising=False)
    rec = tiny_record(monkeypatch, tmp_path, f"{__name__}:_Saturating")
    assert rec["status"] == "diverged" and rec["divergence"]["reason"].startswith("saturated:"), rec


def test_a_confident_network_that_is_right_is_not_saturated():
    """psgld at a huge step on the easy synthetic digits: one-hot softmax on every input, but right
    (every class called): not flagged."""
    from tests.test_mnist_task import tiny_record, tiny_task

    torch.manual_seed(0)
    result = tiny_task().run(sgmcmc.get("psgld"), {"lr": 1e6}, RunContext(seed=0, profile="quick"))
    assert result.metrics["error"] < 20
