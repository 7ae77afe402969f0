"""scripts/relu_ligru_study.py tells a diverging cell from a stable one."""

from __future__ import annotations

import pytest

from tests.recipe_helpers import SMALL_CORPUS, load_script

study = load_script("relu_ligru_study")


@pytest.mark.slow
def test_an_exploding_learning_rate_is_caught_and_a_small_one_is_not(tmp_path):
    tiny = [*SMALL_CORPUS, "rnn.hidden_size=16", "rnn.num_layers=1"]
    cells = ["optim.lr=0.002", "optim.lr=5.0 trainer.gradient_clip_val=1000"]
    rows = study.main(["--steps", "6", "--threads", "1", "--data-dir", str(tmp_path),
                       "--cells", *cells, "--overrides", *tiny])  # fmt: skip
    stable, exploding = rows
    assert stable["steps"] == 6 and stable["first_nonfinite_step"] is None
    assert all(loss == loss for loss in stable["losses"])  # finite, no NaN
    assert exploding["first_nonfinite_step"] is not None
    assert exploding["max_recurrent_norm"] > 10 * stable["max_recurrent_norm"]
    assert len(stable["max_h_per_step"]) == 6 and stable["max_h"] > 0
