"""The published records reproduce: rerunning some of results/records gives the same numbers.

Every run is seeded, so on the software that made a record (the torch version its provenance
names) a rerun gives the same metrics; a change to a sampler's arithmetic, a task's protocol or
the seeding that moves published numbers fails here, before it reaches the leaderboard. On other
software the test is skipped (the draws of another torch may differ legitimately); a relative
tolerance of 1e-6 leaves room for another CPU's vector kernels, not for a changed chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import compare, executors, records

PUBLISHED = Path(__file__).resolve().parent.parent / "results"
#: one toy configuration per sampler, each on another task (first-order, preconditioned,
#: second-order, BAOAB; exact and minibatch gradients), default profile, seed 0
CASES = [
    ("gauss-corr-2d", "sgld"),
    ("blr", "psgld"),
    ("gauss-illcond-100", "sghmc"),
    ("gauss-iso-100", "underdamped"),
    ("gauss-iso-100", "sgd"),
]


def _published(task: str, sampler: str) -> dict:
    for rec in records.load_records(PUBLISHED):
        c = rec["config"]
        if (c["task"], c["sampler"], c["seed"], c["profile"], c.get("variant")) == (task, sampler, 0, "default", "tuned"):
            return rec
    pytest.skip(f"no published default-profile record of {task} / {sampler} seed 0")


@pytest.mark.parametrize("task,sampler", CASES)
def test_a_published_toy_record_reproduces(task, sampler, tmp_path):
    rec = _published(task, sampler)
    made_with = rec["provenance"]["versions"]["torch"]
    if torch.__version__.split("+")[0] != made_with.split("+")[0]:
        pytest.skip(f"published with torch {made_with}, this is {torch.__version__}")
    spec = records.RunSpec.from_config(rec["config"])
    assert spec.key == rec["key"]
    executors.execute([spec], executors.RunOptions(results_dir=str(tmp_path)), log=lambda m: None)
    mine = tmp_path / "published"
    records.write_record(mine, rec)
    result = compare.compare(mine, tmp_path, rtol=1e-6)
    assert result.compared == 1
    assert result.same == 1, compare.format_report(result, "published", "rerun", 1e-6)
