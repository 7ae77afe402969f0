"""A checkpoint written by an earlier release loads and scores exactly as it did then."""

import logging
import shutil

import pytest

from recipes.toolkit.workflow import check_corpus
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


def test_evaluation_normalises_with_the_checkpoint_not_the_corpus_at_hand(data_dir, tmp_path):
    """The same test speakers beside another training split score the same: the statistics are
    the checkpoint's, not recomputed from whatever training split the corpus has."""
    first = tmp_path / "first"
    run_entry("eval", [f"ckpt_path={FIXTURE}", "split=test", *SMALL_CORPUS], data_dir, first)
    other = tmp_path / "other_data"
    run_entry(  # a corpus whose training speakers differ (another generator seed)
        "eval",
        [f"ckpt_path={FIXTURE}", "split=test", *SMALL_CORPUS, "data.generator.seed=5"],
        other,
        tmp_path / "other_eval",
    )
    mixed = tmp_path / "mixed"
    shutil.copytree(other / "builtin_timit" / "TRAIN", mixed / "TRAIN")
    shutil.copytree(data_dir / "builtin_timit" / "TEST", mixed / "TEST")
    second = tmp_path / "second"
    overrides = [
        f"ckpt_path={FIXTURE}",
        "split=test",
        "data=timit",
        f"data.root={mixed}",
        "data.skip_bad=true",
    ]  # a TIMIT-format tree smaller than the LDC one
    done = run_entry("eval", overrides, data_dir, second)
    assert "does not record its training corpus" in done.stderr + done.stdout
    assert results(second)["eval"]["test"] == results(first)["eval"]["test"]


def test_another_kind_of_corpus_is_refused_unless_allowed(caplog):
    trained = {"name": "timit", "root": "/corpora/TIMIT", "train_list": "ab"}
    builtin = {"name": "builtin", "root": "/data/builtin_timit", "train_list": "cd"}
    with pytest.raises(ValueError, match="pass data=timit data.root=..., or allow_other_corpus"):
        check_corpus(trained, builtin, allow_other=False)
    with caplog.at_level(logging.WARNING, logger="recipes"):
        check_corpus(trained, builtin, allow_other=True)
        check_corpus(trained, dict(trained, train_list="ef"), allow_other=False)
    assert caplog.text.count("scoring on another corpus") == 2
    assert "name, root, train_list differ" in caplog.text and "train_list differ" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recipes"):
        check_corpus(trained, dict(trained), allow_other=False)
    assert not caplog.text
