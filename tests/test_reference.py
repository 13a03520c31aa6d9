"""The reference track: its metrics against hand-computed cases, the shipped reference files, the
task's log density against the reference script's, and a quick end-to-end run."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import metrics as M
from benchmarks.tasks import reference as R
from benchmarks.tasks import reference_data as RD

ROOT = Path(__file__).resolve().parents[1]


def test_agreement_and_total_variation_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    q = np.array([[0.6, 0.3, 0.1], [0.4, 0.4, 0.2], [0.2, 0.3, 0.5]])
    # argmax: p -> 0, 1, 0 ; q -> 0, 0 (tie broken to the first), 2
    assert M.agreement(p, q) == pytest.approx(1 / 3)
    # 1/2 sum |p - q| per row: 0.1, 0.3, 0.3 -> mean 0.2333...
    assert M.total_variation(p, q) == pytest.approx((0.1 + 0.3 + 0.3) / 3)
    assert M.total_variation(p, p) == 0.0 and M.agreement(p, p) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        M.total_variation(p, q[:2])


def test_parameter_space_errors_by_hand():
    z = M.standardized_mean_error([1.0, -1.0], [0.0, 0.0], [2.0, 0.5])
    np.testing.assert_allclose(z, [0.5, 2.0])
    r = M.log_sd_ratio([2.0, 0.5], [1.0, 1.0])
    np.testing.assert_allclose(r, [math.log(2), math.log(2)])


@pytest.mark.parametrize("name", ["mnist-logreg", "digits-mlp"])
def test_shipped_reference_digest_and_shapes(name):
    arrays, meta = R.load_reference(name)
    data = (R.REFERENCE_DIR / f"{name}.npz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["npz_sha256"]
    assert len(data) < 4_000_000, "a reference file stays small"
    chains = meta["settings"]["chains"]
    n_test = 10_000 if name == "mnist-logreg" else RD.DIGITS_SPLIT[2]
    assert arrays["probs_chains"].shape == (chains, n_test, 10)
    np.testing.assert_allclose(arrays["probs"], arrays["probs_chains"].mean(0), atol=1e-6)
    np.testing.assert_allclose(arrays["probs"].sum(1), 1.0, atol=1e-4)
    assert 0 <= meta["chain_against_chain"]["tv_mean"] < 0.2
    if name == "mnist-logreg":
        p = RD.num_params(name, RD.LOGREG_COMPONENTS)
        assert arrays["param_mean"].shape == arrays["param_sd"].shape == (p,)
        assert meta["diagnostics"]["params"]["rhat_max"] <= 1.01
        assert meta["diagnostics"]["test_probs"]["rhat_max"] <= 1.01
        assert meta["diagnostics"]["params"]["ess_bulk_min"] >= 400
        assert meta["diagnostics"]["test_probs"]["ess_bulk_min"] >= 400


def test_a_tampered_reference_is_refused(tmp_path):
    src = R.REFERENCE_DIR
    (tmp_path / "digits-mlp.json").write_text((src / "digits-mlp.json").read_text())
    data = bytearray((src / "digits-mlp.npz").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "digits-mlp.npz").write_bytes(bytes(data))
    with pytest.raises(R.ReferenceError, match="sha256"):
        R.load_reference("digits-mlp", str(tmp_path))
    with pytest.raises(R.ReferenceError, match="make_reference.py"):
        R.load_reference("digits-mlp", str(tmp_path / "missing"))


@pytest.mark.parametrize("name,features", [("mnist-logreg", RD.LOGREG_COMPONENTS), ("digits-mlp", 64)])
def test_task_log_density_matches_the_reference_script(name, features, tmp_path):
    """The potential the samplers see (torch) and the one NUTS sampled (jax) agree at random points.
    jax runs in a child process: it starts threads that a later os.fork in this process (the
    step-machinery tests) would inherit half-locked."""
    if importlib.util.find_spec("numpyro") is None:
        pytest.skip('the reference extra: pip install -e ".[reference]"')
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, features)).astype(np.float32)
    y = rng.integers(0, 10, size=200)
    thetas = (0.5 * rng.normal(size=(3, RD.num_params(name, features)))).astype(np.float32)
    np.savez(tmp_path / "points.npz", x=x, y=y, thetas=thetas)
    child = (
        "import sys, numpy as np, jax.numpy as jnp; sys.path.insert(0, 'scripts'); import make_reference as m; "
        f"f = np.load({str(tmp_path / 'points.npz')!r}); "
        f"logp = m.log_density({name!r}, jnp.asarray(f['x']), jnp.asarray(f['y'])); "
        "print(' '.join(repr(-float(logp(jnp.asarray(t)))) for t in f['thetas']))"
    )
    out = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    u_jax = [float(v) for v in out.stdout.split()]
    for theta, u in zip(thetas, u_jax):
        u_torch = float(RD.potential(name, torch.from_numpy(theta).double(), torch.from_numpy(x).double(),
                                     torch.from_numpy(y)))
        assert u == pytest.approx(u_torch, rel=2e-6)


def test_quick_end_to_end_digits(tmp_path):
    """`run reference --tasks digits-mlp --profile quick` writes ok records scored against HMC."""
    from benchmarks.__main__ import main

    rc = main(["run", "reference", "--tasks", "digits-mlp", "--samplers", "sgd,sgld", "--seeds", "1",
               "--profile", "quick", "--results-dir", str(tmp_path), "--no-sweep"])
    assert rc == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert {r["config"]["sampler"] for r in records} == {"sgd", "sgld"}
    for r in records:
        assert r["status"] == "ok"
        assert 0 < r["metrics"]["tv"] < 1 and 0 < r["metrics"]["agreement"] <= 1
        assert r["grad_evals"] == 25 * (1000 // 50)
    board = (tmp_path / "leaderboard.md").read_text()
    assert "digits-mlp" in board and "TV to HMC" in board
