"""A checkpoint written by an earlier release loads and scores exactly as it did then."""

import pytest

from tests.recipe_helpers import REPO, SMALL_CORPUS, results, run_entry

pytestmark = pytest.mark.slow

FIXTURE = REPO / "tests" / "fixtures" / "ctc_ligru_v0.ckpt"
# What the recipe of commit d687e83 reported for this checkpoint on this corpus's test split.
EXPECTED = {"phones": 197, "substitutions": 32, "deletions": 138, "insertions": 0}


def test_old_checkpoint_evaluates_to_the_same_counts(data_dir, tmp_path):
    run_dir = tmp_path / "eval"
    run_entry("eval", [f"ckpt_path={FIXTURE}", "split=test", *SMALL_CORPUS], data_dir, run_dir)
    test = results(run_dir)["eval"]["test"]
    assert {key: test[key] for key in EXPECTED} == EXPECTED, test
    assert test["per"] == pytest.approx(86.2944, abs=1e-4)
