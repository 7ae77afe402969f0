"""Significance tests (recipes.toolkit.evaluation.significance), the summary's comparison with
the best configuration, and the sclite ``trn`` files of write_evaluation."""

import csv
import importlib.util
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from recipes.toolkit.evaluation.reports import write_evaluation
from recipes.toolkit.evaluation.significance import (
    mapsswe,
    pair_files,
    pair_utterances,
    paired_bootstrap,
    parse_hyp_ref,
    pool_runs,
    read_hyp_ref,
)
from recipes.toolkit.run.summary import find_runs, load_run, summarize, to_csv, to_markdown

REPO = Path(__file__).resolve().parents[1]


# ----- MAPSSWE ------------------------------------------------------------------------------------
def test_mapsswe_matches_hand_computed_statistic():
    # Z = a - b = [1, 2, 0, 1]: mean 1; deviations 0, 1, -1, 0, so the sample variance is
    # 2 / 3 and std 0.8165; W = 1 / (0.8165 / sqrt(4)) = 2.449; p = erfc(2.449 / sqrt 2) = 0.0143.
    result = mapsswe([3, 2, 4, 1], [2, 0, 4, 0])
    assert result.n == 4 and result.mean_difference == pytest.approx(1.0)
    assert result.statistic == pytest.approx(2.449, abs=1e-3)
    assert result.p_value == pytest.approx(0.0143, abs=1e-4)
    # Swapping the systems flips the sign of W, not the two-sided p-value.
    swapped = mapsswe([2, 0, 4, 0], [3, 2, 4, 1])
    assert swapped.statistic == pytest.approx(-2.449, abs=1e-3)
    assert swapped.mean_difference == pytest.approx(-1.0)
    assert swapped.p_value == pytest.approx(result.p_value)


def test_mapsswe_second_hand_computed_case():
    # Z = [2, -1, 0, 3, 1]: mean 1; deviations 1, -2, -1, 2, 0, squares sum to 10, variance
    # 10 / 4 = 2.5, std 1.5811; W = 1 / (1.5811 / sqrt 5) = sqrt 2 = 1.4142; p = erfc(1) = 0.1573.
    result = mapsswe([5, 1, 2, 3, 1], [3, 2, 2, 0, 0])
    assert result.statistic == pytest.approx(math.sqrt(2))
    assert result.p_value == pytest.approx(0.1573, abs=1e-4)


def test_mapsswe_without_spread_is_exact():
    same = mapsswe([4, 0, 2, 7], [4, 0, 2, 7])
    assert (same.statistic, same.p_value, same.mean_difference) == (0.0, 1.0, 0.0)
    worse = mapsswe([5, 1, 3, 8], [4, 0, 2, 7])  # always one error more
    assert worse.p_value == 0.0 and worse.statistic == math.inf and worse.mean_difference == 1.0
    better = mapsswe([3.5, 1.5], [4, 2])  # always half an error fewer (seed-averaged counts)
    assert better.p_value == 0.0 and better.statistic == -math.inf
    # 0.3 - 0.2 is 0.09999999999999998 everywhere; a rounded mean must not fake a spread.
    drift = mapsswe([0.3] * 10, [0.2] * 10)
    assert drift.p_value == 0.0 and drift.statistic == math.inf


def test_mapsswe_rejects_unusable_input():
    with pytest.raises(ValueError, match="at least two segments"):
        mapsswe([1], [0])
    with pytest.raises(ValueError, match="equally long"):
        mapsswe([1, 2, 3], [0, 1])


# ----- paired bootstrap ---------------------------------------------------------------------------
def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` utterances of 20-40 phones; B makes one error fewer than A on average."""
    rng = np.random.default_rng(seed)
    refs = rng.integers(20, 41, size=n)
    errors_b = rng.binomial(refs, 0.2)
    errors_a = np.maximum(errors_b + rng.integers(-2, 5, size=n), 0)
    return errors_a, errors_b, refs


def test_bootstrap_is_seeded_and_brackets_the_observed_difference():
    a, b, refs = synthetic(60, seed=3)
    first = paired_bootstrap(a, b, refs, samples=500, seed=7)
    assert first == paired_bootstrap(a, b, refs, samples=500, seed=7)
    assert first != paired_bootstrap(a, b, refs, samples=500, seed=8)
    observed = 100.0 * (a.sum() - b.sum()) / refs.sum()
    assert first.difference == pytest.approx(observed)
    assert first.ci_low < first.difference < first.ci_high
    assert first.samples == 500 and first.confidence == 0.95
    # A makes more errors: it is better in (almost) no resample; as B the share is the mirror.
    assert first.prob_a_better < 0.05
    mirrored = paired_bootstrap(b, a, refs, samples=500, seed=7)
    assert mirrored.difference == pytest.approx(-first.difference)
    assert mirrored.prob_a_better > 0.95


def test_bootstrap_interval_narrows_with_more_utterances():
    widths = []
    for n in (30, 300, 3000):
        result = paired_bootstrap(*synthetic(n, seed=11), samples=400, seed=0)
        widths.append(result.ci_high - result.ci_low)
    assert widths[0] > widths[1] > widths[2] > 0
    # The width shrinks like 1 / sqrt(n): ten times the utterances, about a third of the width.
    assert 0.2 < widths[2] / widths[1] < 0.5


def test_bootstrap_of_identical_utterances_has_no_spread():
    # Every utterance: A 3 errors, B 1, 10 phones; any resample gives 100 * 2n / 10n = 20 points.
    result = paired_bootstrap([3] * 5, [1] * 5, [10] * 5, samples=50)
    assert result.difference == result.ci_low == result.ci_high == pytest.approx(20.0)
    assert result.prob_a_better == 0.0
    wider = paired_bootstrap([3] * 5, [1] * 5, [10] * 5, samples=50, confidence=0.5)
    assert wider.confidence == 0.5
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1, 2], [1, 2], [3])


# ----- per-utterance files ------------------------------------------------------------------------
def records(errors: list[int], ref_len: int = 10) -> list[dict]:
    """Utterances ``spk<i % 4>_u<i>`` whose hypotheses hold ``errors[i]`` substitutions."""
    ref = [f"p{k}" for k in range(ref_len)]
    return [
        {"utt_id": f"spk{i % 4}_u{i:02d}", "speaker": f"spk{i % 4}", "ref": ref,
         "hyp": ["x"] * e + ref[e:]}
        for i, e in enumerate(errors)
    ]  # fmt: skip


def test_read_hyp_ref_reads_what_write_evaluation_wrote(tmp_path):
    utterances = [
        {"utt_id": "b_2", "speaker": "b", "ref": ["a", "b", "c"], "hyp": ["a", "x"]},  # S + D
        {"utt_id": "a_1", "speaker": "a", "ref": ["a", "b"], "hyp": ["a", "b"]},
        {"utt_id": "c_3", "speaker": "c", "ref": ["a"], "hyp": ["a", "y", "z"]},  # 2 I
    ]
    write_evaluation(utterances, tmp_path, "test")
    table = read_hyp_ref(tmp_path / "test_hyp_ref.txt")
    assert table == {"a_1": (0, 2), "b_2": (2, 3), "c_3": (2, 1)}


def test_parse_hyp_ref_rejects_broken_files():
    with pytest.raises(ValueError, match=r"f.txt:2: not"):
        parse_hyp_ref("u1\terrors=1/3\nu2 errors=1/3\n", "f.txt")
    with pytest.raises(ValueError, match="'u1' appears twice"):
        parse_hyp_ref("u1\terrors=1/3\n  REF: a\nu1\terrors=0/3\n")


def test_pair_files_names_both_files_when_utterances_differ(tmp_path):
    write_evaluation(records([1, 2, 3]), tmp_path / "a", "test")
    write_evaluation(records([1, 2]), tmp_path / "b", "test")
    a, b = tmp_path / "a" / "test_hyp_ref.txt", tmp_path / "b" / "test_hyp_ref.txt"
    with pytest.raises(ValueError) as raised:
        pair_files(a, b)
    message = str(raised.value)
    assert str(a) in message and str(b) in message
    assert "3 utterances" in message and "2 utterances" in message and "spk2_u02" in message

    write_evaluation(records([0, 2, 1]), tmp_path / "c", "test")
    paired = pair_files(a, tmp_path / "c" / "test_hyp_ref.txt")
    assert paired.utt_ids == ["spk0_u00", "spk1_u01", "spk2_u02"]
    assert paired.errors_a.tolist() == [1, 2, 3] and paired.errors_b.tolist() == [0, 2, 1]
    assert paired.reference.tolist() == [10, 10, 10]


def test_pairing_rejects_different_reference_lengths():
    with pytest.raises(ValueError, match="'u1' has 4 reference phones in x but 5 in y"):
        pair_utterances({"u1": (1, 4)}, {"u1": (1, 5)}, "x", "y")


def test_pool_runs_averages_seeds(tmp_path):
    write_evaluation(records([1, 4, 0]), tmp_path / "s1", "test")
    write_evaluation(records([3, 1, 0]), tmp_path / "s2", "test")
    pooled = pool_runs([tmp_path / s / "test_hyp_ref.txt" for s in ("s1", "s2")])
    assert pooled == {"spk0_u00": (2.0, 10), "spk1_u01": (2.5, 10), "spk2_u02": (0.0, 10)}
    write_evaluation(records([3, 1]), tmp_path / "s3", "test")
    with pytest.raises(ValueError, match="3 utterances.*2 utterances"):
        pool_runs([tmp_path / s / "test_hyp_ref.txt" for s in ("s1", "s3")])


# ----- sclite files -------------------------------------------------------------------------------
def test_write_evaluation_writes_sclite_trn_files(tmp_path):
    utterances = [
        {"utt_id": "mbjk0_sx1", "speaker": "mbjk0", "ref": ["sil", "b", "aa", "sil"],
         "hyp": ["sil", "aa", "sil"]},
        {"utt_id": "si1279", "speaker": "fadg0", "ref": ["sil", "dh", "ax"], "hyp": []},
    ]  # fmt: skip
    write_evaluation(utterances, tmp_path, "dev")
    # Sorted by utt_id like the other files ("mbjk0_sx1" < "si1279"); an id without the speaker
    # gets it in front, as sclite's spu_id reads the speaker up to the first underscore.
    assert (tmp_path / "dev_ref.trn").read_text() == (
        "sil b aa sil (mbjk0_sx1)\nsil dh ax (fadg0_si1279)\n"
    )
    assert (tmp_path / "dev_hyp.trn").read_text() == "sil aa sil (mbjk0_sx1)\n(fadg0_si1279)\n"
    order = [line.split("\t")[0] for line in (tmp_path / "dev_hyp_ref.txt").read_text().split("\n")]
    assert [u for u in order if u and not u.startswith(" ")] == ["mbjk0_sx1", "si1279"]


# ----- the summary's comparison with the best configuration ---------------------------------------
def fake_run(run_dir: Path, config: str, seed: int, errors: list[int] | None) -> Path:
    """A finished run of ``config`` whose test utterances have ``errors`` (None: no eval files)."""
    (run_dir / ".hydra").mkdir(parents=True)
    rnn = {"name": "gru", "hidden_size": 64, "num_layers": 2, "bidirectional": True}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "rnn": rnn}))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([config, f"seed={seed}"]))
    test = {"per": 100.0 * sum(errors or [3]) / (10 * len(errors or [3]))}
    if errors is not None:
        test = write_evaluation(records(errors), run_dir / "eval", "test")
    dev = {"per": 100.0 - test["per"]}  # the best on dev is the worst on test
    (run_dir / "results.json").write_text(json.dumps({"eval": {"dev": dev, "test": test}}))
    return run_dir


BASE = [3] * 20  # the best configuration: 3 of 10 phones wrong in each of 20 utterances
JITTER = [1, 0] * 10  # seeds of the other configuration differ by +-JITTER, pooled they don't


def other_seeds(z: list[int]) -> tuple[list[int], list[int]]:
    """Two seeds whose mean per utterance is ``BASE + z``."""
    first = [b + d + j for b, d, j in zip(BASE, z, JITTER, strict=True)]
    second = [b + d - j for b, d, j in zip(BASE, z, JITTER, strict=True)]
    return first, second


def summary_of(tmp_path: Path, runs: dict[tuple[str, int], list[int] | None]):
    for (config, seed), errors in runs.items():
        fake_run(tmp_path / f"{config.replace('=', '_')}_{seed}", config, seed, errors)
    rows = summarize([load_run(path) for path in find_runs([tmp_path])])
    return {row.config: row for row in rows}, rows


@pytest.mark.parametrize(
    ("z", "differs", "statistic", "p_value", "shown"),
    [
        # Z = [1, 2, 0, 1] x 5: mean 1, squared deviations sum to 5 * 2 = 10, sample variance
        # 10 / 19, std 0.7255; W = 1 / (0.7255 / sqrt 20) = 6.164, p = erfc(6.164 / sqrt 2) = 7e-10.
        ([1, 2, 0, 1] * 5, "yes", 6.164, 7.07e-10, "yes (p < 0.0001)"),
        # Z = [1, -1, 0, 1] x 5: mean 0.25, squared deviations 5 * 2.75 = 13.75, variance
        # 13.75 / 19, std 0.8507; W = 0.25 / (0.8507 / sqrt 20) = 1.314, p = 0.1888.
        ([1, -1, 0, 1] * 5, "no", 1.314, 0.1888, "no (p = 0.1888)"),
    ],
)
def test_summary_marks_configurations_that_differ_from_the_best(
    tmp_path, z, differs, statistic, p_value, shown
):
    first, second = other_seeds(z)
    by_config, rows = summary_of(
        tmp_path,
        {
            ("rnn=gru", 1): BASE,
            ("rnn=gru", 2): BASE,
            ("rnn=lstm", 1): first,
            ("rnn=lstm", 2): second,
        },
    )
    best, other = by_config["rnn=gru"], by_config["rnn=lstm"]
    assert rows == [other, best]  # rows stay sorted by dev PER; the best is chosen on test
    assert best.vs_best == "best" and best.p_value is None
    assert other.vs_best == differs
    assert other.p_value == pytest.approx(p_value, rel=1e-3)
    # The p-value belongs to the hand-computed W (pooled seeds cancel the +-JITTER).
    assert other.p_value == pytest.approx(math.erfc(statistic / math.sqrt(2)), rel=5e-3)
    # PER difference to the best: mean Z of 10 phones, and the seeds' mean test PER difference.
    assert other.diff_to_best == pytest.approx(100 * sum(z) / (10 * len(z)))
    assert other.diff_to_best == pytest.approx(other.test_mean - best.test_mean, abs=1e-3)
    assert other.diff_ci_low < other.diff_to_best < other.diff_ci_high
    assert (other.diff_ci_low > 0) == (differs == "yes")  # here the two tests agree

    markdown = to_markdown(rows, [])
    assert "| differs from the best at p < 0.05 |" in markdown
    assert "| best |" in markdown and f"| {shown} |" in markdown
    table = {r["config"]: r for r in csv.DictReader(io.StringIO(to_csv(rows, [])))}
    assert table["rnn=gru"]["test_differs_from_best"] == "best"
    assert table["rnn=lstm"]["test_differs_from_best"] == differs
    assert float(table["rnn=lstm"]["test_p_value"]) == pytest.approx(other.p_value)
    low, high = (float(table["rnn=lstm"][f"test_diff_ci_{k}"]) for k in ("low", "high"))
    assert (low, high) == pytest.approx((other.diff_ci_low, other.diff_ci_high))


def test_summary_pools_unequal_numbers_of_seeds_on_one_scale(tmp_path):
    # One seed with the best's errors against two: the same system, so no difference. Summing
    # without dividing by the number of seeds would double the best's errors and say "yes".
    first, second = other_seeds([0] * 20)
    by_config, _ = summary_of(
        tmp_path, {("rnn=gru", 1): BASE, ("rnn=lstm", 1): first, ("rnn=lstm", 2): second}
    )
    assert by_config["rnn=lstm"].vs_best == "no" and by_config["rnn=lstm"].p_value == 1.0
    assert by_config["rnn=gru"].vs_best == "best"


def test_summary_without_per_utterance_files_says_so(tmp_path):
    worse = [4] * 20
    by_config, rows = summary_of(
        tmp_path,
        {
            ("rnn=gru", 1): BASE,
            ("rnn=lstm", 1): worse,
            ("rnn=lstm", 2): None,
            ("rnn=rnn", 1): [3, 4] * 5,
        },  # fmt: skip
    )
    assert by_config["rnn=gru"].vs_best == "best"
    missing = by_config["rnn=lstm"]
    assert missing.vs_best == "–" and missing.p_value is None
    assert "rnn_lstm_2" in missing.note and "test_hyp_ref.txt" in missing.note
    mismatched = by_config["rnn=rnn"]  # 10 test utterances against the best's 20
    assert mismatched.vs_best == "–" and "10 utterances" in mismatched.note
    markdown = to_markdown(rows, [])
    assert "| – |" in markdown and "Not compared with the best:" in markdown


def test_summarize_runs_script_writes_the_columns(tmp_path):
    first, second = other_seeds([1, 2, 0, 1] * 5)
    runs = tmp_path / "runs"
    for (config, seed), errors in {
        ("rnn=gru", 1): BASE, ("rnn=gru", 2): BASE, ("rnn=lstm", 1): first, ("rnn=lstm", 2): second
    }.items():  # fmt: skip
        fake_run(runs / f"{config}_{seed}", config, seed, errors)
    spec = importlib.util.spec_from_file_location("s", REPO / "scripts" / "summarize_runs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(runs), "--csv", str(tmp_path / "t.csv")]) == 0
    table = {r["config"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    assert table["rnn=lstm"]["test_differs_from_best"] == "yes"
    assert float(table["rnn=lstm"]["test_diff_ci_low"]) > 0
