"""The dask executor (benchmarks.executors.dask): LocalCluster and an existing scheduler on loopback,
the same records as the local executor, a worker killed mid-run, Ctrl-C, and dask missing.

Dask workers are separate (spawned) processes, so monkeypatching in this process does not reach
them: these tests use the real ``quick`` profile of the cheapest task (gauss-corr-2d, about half a
second a run) on grids of two or three runs, and a crashing sampler that workers import from a
module in ``tmp_path`` (put on ``sys.path``, which multiprocessing's spawn hands to every worker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from benchmarks import executors, grid, records
from benchmarks.executors import dask as bdist

ROOT = Path(__file__).resolve().parent.parent
TASK = "gauss-corr-2d"
# kl, w2, ... are the run's numbers; ess_per_second and sampling times are wall-clock, so not compared
COMPARED = ("kl", "w2", "mean_error", "var_error", "ess_min", "rhat_max", "ess_per_1k_grads")


def toy_grid(samplers=("sgld", "psgld"), seeds=1) -> list[records.RunSpec]:
    return grid.build_grid("toy", "quick", list(samplers), seeds, sweep=False, tasks=[TASK])


def all_records(results: Path) -> dict[str, dict]:
    return {p.stem: records.read_record(p) for p in sorted((results / "records").glob("*.json"))}


def quiet(_msg: str) -> None:
    pass


@pytest.fixture
def clusters(monkeypatch):
    """Every LocalCluster that execute_dask starts, to check that it was closed."""
    distributed = pytest.importorskip("distributed")
    started = []

    class Recorded(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(distributed, "LocalCluster", Recorded)
    return started


def _listening_addresses() -> list[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of this process and its descendants."""
    psutil = pytest.importorskip("psutil")
    out = []
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="tcp") if hasattr(proc, "net_connections") else proc.connections("tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def assert_closed(clusters) -> None:
    assert clusters, "execute_dask started no LocalCluster"
    for cluster in clusters:
        assert cluster.status.name == "closed", cluster.status


# --------------------------------------------------------------------------- fast
def test_missing_dask_error_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # `import dask.distributed` now fails
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(bdist.DaskUnavailableError) as exc:
        bdist.require_dask()
    assert 'pip install "sgmcmc-bench[dask]"' in str(exc.value)
    assert isinstance(exc.value, ImportError) and isinstance(exc.value, bdist.DaskError)
    # through the runner: the error escapes (the CLI turns it into exit 2) and nothing ran
    with pytest.raises(bdist.DaskUnavailableError, match=r"sgmcmc-bench\[dask\]"):
        executors.execute(toy_grid(), executors.RunOptions(results_dir=str(tmp_path)), executor="dask", log=quiet)
    assert not (tmp_path / "records").exists()


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1:18786x", "is not a scheduler address"),
    ("http://127.0.0.1:8786", "unknown scheme 'http'; valid: tcp"),  # a dashboard URL, say
    ("tcp://127.0.0.1:99999", "port 99999 is out of range"),
])
def test_a_malformed_scheduler_address_is_refused_at_once(tmp_path, address, why):
    pytest.importorskip("distributed")
    spec = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 0, "quick")
    with pytest.raises(bdist.DaskError, match=why):  # refused on parsing, before any connection attempt
        bdist.execute_dask([spec], executors.RunOptions(results_dir=str(tmp_path)), jobs=1,
                                 scheduler=address, on_record=quiet, log=quiet)


def test_workers_that_cannot_import_the_project_stop_the_grid_naming_them():
    class Client:
        def __init__(self, answers):
            self.answers = answers

        def run(self, func, *args, on_error="raise"):
            return self.answers

    messages = []
    with pytest.raises(bdist.DaskError, match=r"1 of 2 dask worker\(s\) cannot import sgmcmc-bench "
                                                    r"\(tcp://10.0.0.2:1: ModuleNotFoundError"):
        bdist.check_workers(Client({"tcp://10.0.0.1:1": (1, records.git_commit()),
                                          "tcp://10.0.0.2:1": ModuleNotFoundError("No module named 'benchmarks'")}),
                                  messages.append)
    bdist.check_workers(Client({"tcp://10.0.0.1:1": (1, "abc123")}), messages.append)
    assert "worker(s) run commit(s) abc123" in messages[0]


def test_workers_by_host_counts_worker_processes():
    pytest.importorskip("distributed")
    workers = {"tcp://10.0.0.1:4001": 1, "tcp://10.0.0.1:4002": 1, "tcp://10.0.0.2:4001": 4,
               "tls://[::1]:5000": 1}
    assert bdist.workers_by_host(workers) == {"10.0.0.1": 2, "10.0.0.2": 1, "::1": 1}


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(bdist.DaskError, match="tcp://127.0.0.1:1.*dask scheduler"):
            bdist.execute_dask(toy_grid(), executors.RunOptions(results_dir=str(tmp_path)), jobs=1,
                               scheduler="tcp://127.0.0.1:1", on_record=quiet, log=quiet)
    assert not (tmp_path / "records").exists()


# --------------------------------------------------------------------------- LocalCluster
@pytest.mark.slow
def test_local_cluster_gives_the_same_records_as_the_local_executor(tmp_path, clusters):
    specs = toy_grid()
    seq = executors.execute(specs, executors.RunOptions(results_dir=str(tmp_path / "local")), log=quiet)
    assert seq.counts["ok"] == 2
    logged, listening = [], []

    def log(msg):
        logged.append(msg)
        if "LocalCluster" in msg:  # the cluster is up: what do this process and its children listen on?
            listening.extend(_listening_addresses())

    summary = executors.execute(specs, executors.RunOptions(results_dir=str(tmp_path / "dask")), jobs=2,
                             executor="dask", log=log)
    assert summary.counts["ok"] == 2 and not summary.interrupted and not summary.failures
    assert any("LocalCluster" in m and "127.0.0.1" in m for m in logged)
    assert len(listening) >= 3 and {ip for ip, _ in listening} == {"127.0.0.1"}, listening  # loopback only
    assert_closed(clusters)
    local, dasked = all_records(tmp_path / "local"), all_records(tmp_path / "dask")
    assert local.keys() == dasked.keys() == {s.key for s in specs}
    for key, rec in dasked.items():
        assert rec["status"] == "ok"
        assert rec["grad_evals"] == local[key]["grad_evals"]
        for metric in COMPARED:
            assert rec["metrics"][metric] == local[key]["metrics"][metric], (key, metric)
        assert rec["provenance"]["torch_threads"] == executors.cpu_threads_per_worker(2)
        assert rec["provenance"]["host"] == local[key]["provenance"]["host"]
    # a rerun skips what is recorded, without starting a cluster
    again = executors.execute(specs, executors.RunOptions(results_dir=str(tmp_path / "dask")), jobs=2,
                           executor="dask", log=quiet)
    assert again.skipped == 2 and sum(again.counts.values()) == 0 and len(clusters) == 1


CRASHY = '''
import math
import os
import signal
from pathlib import Path

import torch
from sgmcmc import Sampler

FLAG = Path({flag!r})


class CrashSGLD(Sampler):
    """SGLD that kills its own process on its first step while FLAG exists."""

    def _update(self, group, params, grads):
        if FLAG.exists():
            os.kill(os.getpid(), signal.SIGKILL)
        scale = math.sqrt(2 * group["lr"] * group["temperature"] / group["num_data"])
        for p, g in zip(params, grads):
            p.add_(g, alpha=-group["lr"]).add_(torch.randn_like(p), alpha=scale)
'''


@pytest.mark.slow
def test_worker_killed_mid_run_leaves_a_failed_record_and_the_grid_goes_on(tmp_path, monkeypatch, clusters):
    flag = tmp_path / "crash-now"
    flag.touch()
    mod = tmp_path / "mods"
    mod.mkdir()
    (mod / "crashy_sampler.py").write_text(textwrap.dedent(CRASHY.format(flag=str(flag))))
    # LocalCluster workers are spawned by multiprocessing, which gives them this process's sys.path
    # (not $PYTHONPATH: spawn overwrites the child's sys.path with the parent's)
    monkeypatch.syspath_prepend(str(mod))
    specs = toy_grid(samplers=("sgld", "crashy_sampler:CrashSGLD", "psgld"))
    crash = next(s for s in specs if s.sampler.startswith("crashy"))
    out = tmp_path / "results"
    opts = executors.RunOptions(results_dir=str(out))

    summary = executors.execute(specs, opts, jobs=2, executor="dask", log=quiet)
    assert summary.counts == {"ok": 2, "diverged": 0, "failed": 1}, summary.failures
    assert not summary.interrupted
    ((config, error),) = summary.failures
    assert config == crash.config()
    assert "worker died" in error and "KilledWorker" in error and "run the same command again" in error
    assert_closed(clusters)
    recs = all_records(out)
    assert set(recs) == {s.key for s in specs}
    assert all(r["status"] == "ok" for k, r in recs.items() if k != crash.key)
    # the client recorded the run whose worker died as failed (so the leaderboard shows it)
    assert recs[crash.key]["status"] == "failed" and "worker died" in recs[crash.key]["error"]
    assert [p.name for p in (out / "records").iterdir() if p.suffix != ".json"] == []  # no partial file

    # the crash was transient: a rerun runs only what is missing
    flag.unlink()
    again = executors.execute(specs, opts, jobs=2, executor="dask", log=quiet)
    assert again.skipped == 2 and again.counts["ok"] == 1 and not again.failures
    assert records.read_record(records.record_path(out, crash))["status"] == "ok"
    assert set(all_records(out)) == {s.key for s in specs}


@pytest.mark.slow
def test_interrupt_cancels_closes_the_cluster_and_reraises(tmp_path, clusters):
    specs = toy_grid(samplers=("sgld", "psgld", "sghmc"))
    seen = []

    def on_record(record):
        seen.append(record)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bdist.execute_dask(specs, executors.RunOptions(results_dir=str(tmp_path)), jobs=1, scheduler=None,
                           on_record=on_record, log=quiet)
    assert len(seen) == 1
    assert_closed(clusters)
    time.sleep(0.5)
    recs = all_records(tmp_path)  # every record present is whole and valid
    assert 1 <= len(recs) < len(specs)
    assert [p.name for p in (tmp_path / "records").iterdir() if p.suffix != ".json"] == []


def _processes_with_env(marker: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SGMCMC_TEST_MARKER") == marker:
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


@pytest.mark.slow
def test_ctrl_c_on_the_cli_stops_the_cluster_and_says_how_to_resume(tmp_path):
    pytest.importorskip("psutil")
    marker = uuid.uuid4().hex
    env = {**os.environ, "SGMCMC_TEST_MARKER": marker}
    cmd = [sys.executable, "-m", "benchmarks", "run", "toy", "--profile", "quick", "--tasks", TASK,
           "--samplers", "sgld,psgld,sghmc,underdamped", "--seeds", "2", "--no-sweep", "--no-report",
           "--executor", "dask", "--jobs", "2", "--results-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    folder = tmp_path / "records"
    deadline = time.time() + 90
    while time.time() < deadline and len(list(folder.glob("*.json"))) < 1 and proc.poll() is None:
        time.sleep(0.05)
    # as Ctrl-C in a terminal: SIGINT to the whole process group, the LocalCluster's workers included
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "(interrupted)" in out and "resume" in err
    assert "Traceback" not in err  # the workers ignore SIGINT; the client alone stops the grid
    deadline = time.time() + 15  # worker processes of the LocalCluster are gone with it
    while _processes_with_env(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _processes_with_env(marker) == []
    recs = all_records(tmp_path)
    assert 1 <= len(recs) < 8
    assert [p.name for p in folder.iterdir() if p.suffix != ".json"] == []


# --------------------------------------------------------------------------- an existing scheduler
@pytest.mark.slow
def test_existing_scheduler_runs_the_grid_and_is_left_running(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        logged = []
        specs = toy_grid()
        summary = executors.execute(specs, executors.RunOptions(results_dir=str(tmp_path)), jobs=5,
                                 executor="dask", scheduler=cluster.scheduler_address, log=logged.append)
        assert summary.counts["ok"] == 2 and not summary.failures
        assert any(cluster.scheduler_address in m and "1 worker(s) on 1 host(s)" in m and "--jobs 5 is ignored" in m
                   for m in logged)
        assert cluster.status.name == "running"  # not ours to close
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
            assert len(client.nthreads()) == 1
        recs = all_records(tmp_path)
        assert set(recs) == {s.key for s in specs}
        for rec in recs.values():
            # one worker process on this host: each run gets all the host's cores
            assert rec["provenance"]["torch_threads"] == executors.cpu_threads_per_worker(1)


@pytest.mark.slow
def test_a_cluster_without_workers_is_reported_while_runs_wait(tmp_path, monkeypatch):
    import threading

    import torch

    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(bdist, "STALL_LOG_S", 1.0)
    threads = torch.get_num_threads()
    cluster = distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, scheduler_kwargs={"dashboard": False,
                                                                                 "dashboard_address": "127.0.0.1:0"})
    try:
        logs, got = [], []
        spec = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 0, "quick")
        worker = threading.Thread(target=bdist.execute_dask, args=([spec], executors.RunOptions(results_dir=str(tmp_path))),
                                  kwargs=dict(jobs=1, scheduler=cluster.scheduler_address, on_record=got.append,
                                              log=logs.append))
        worker.start()
        deadline = time.time() + 60
        while time.time() < deadline and not any("no worker connected" in m for m in logs):
            time.sleep(0.1)
        assert any("no worker connected" in m and "1 run(s) waiting" in m for m in logs), logs
        cluster.scale(1)  # a worker joins: the grid goes on
        worker.join(180)
        assert not worker.is_alive() and [r["status"] for r in got] == ["ok"]
    finally:
        cluster.close()
        torch.set_num_threads(threads)
