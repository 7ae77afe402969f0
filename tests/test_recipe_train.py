"""The TIMIT recipe end to end with a real Trainer on a small generated corpus."""

import json
import re
import shutil

import pytest
import torch

from recipes.timit.corpus import read_timit
from recipes.timit.phones import map_phones
from recipes.toolkit.evaluation.scoring import count_errors
from tests.recipe_helpers import OVERFIT, REPO, SMALL_CORPUS, SMALL_MODEL, results, run_entry

pytestmark = pytest.mark.slow

TYPES = ["rnn", "lstm", "gru", "ligru", "sligru"]


@pytest.fixture(scope="module")
def overfit_run(data_dir, tmp_path_factory):
    """A Light GRU that learns the training utterances by heart (scored on train)."""
    run_dir = tmp_path_factory.mktemp("overfit")
    overrides = [
        *OVERFIT,
        "trainer.max_epochs=90",
    ]
    done = run_entry("train", overrides, data_dir, run_dir)
    return run_dir, done


def test_overfits_a_few_utterances(overfit_run):
    run_dir, done = overfit_run
    res = results(run_dir)
    assert res["eval"]["train"]["per"] < 10.0, res
    assert "run directory:" in done.stdout and "| train |" in done.stdout
    for name in ("run_info.json", "learning_curves.png", "posteriors.png", ".hydra/config.yaml"):
        assert (run_dir / name).exists(), name
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["torch_threads"] >= 1 and info["cores"] >= 1, info  # both change rounding
    assert info["cpu"]["vendor"] == info["product_routes"]["cpu_vendor"], info
    routes = info["product_routes"]
    assert routes["deterministic"] and routes["float32"] == "blas", routes  # trainer=cpu's promise
    speakers = (run_dir / "eval" / "train_speakers.tsv").read_text().splitlines()
    assert len(speakers) == 1 + 4
    assert "REF:" in (run_dir / "eval" / "train_hyp_ref.txt").read_text()


def test_transcribe_gives_training_labels_back(overfit_run, data_dir, tmp_path):
    run_dir, _ = overfit_run
    corpus = read_timit(data_dir / "builtin_timit")
    utterance = corpus["train"][0]
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    done = run_entry(
        "transcribe",
        [f"ckpt_path={checkpoint}", f"audio=[{utterance.wav}]"],
        data_dir,
        tmp_path / "transcribe",
    )
    line = [x for x in done.stdout.splitlines() if x.startswith(str(utterance.wav))][0]
    hypothesis = line.split("\t")[1].split()
    reference = map_phones([p for _, _, p in utterance.segments], 39)
    assert count_errors(reference, hypothesis).per < 10.0, (reference, hypothesis)


@pytest.fixture(scope="module")
def short_runs(data_dir, tmp_path_factory):
    runs = {}
    for name in TYPES:
        run_dir = tmp_path_factory.mktemp(f"short_{name}")
        overrides = [f"rnn={name}", *SMALL_CORPUS, *SMALL_MODEL, "trainer.max_epochs=1"]
        runs[name] = (run_dir, run_entry("train", overrides, data_dir, run_dir))
    return runs


@pytest.mark.parametrize("name", TYPES)
def test_every_rnn_type_trains_and_saves_a_checkpoint(short_runs, name):
    run_dir, _ = short_runs[name]
    res = results(run_dir)
    assert res["rnn"] == name
    assert (run_dir / "checkpoints" / "best.ckpt").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    test = res["eval"]["test"]
    errors = test["substitutions"] + test["deletions"] + test["insertions"]
    assert test["phones"] > 0 and test["per"] == pytest.approx(100 * errors / test["phones"], 1e-4)
    lines = (run_dir / "eval" / "test_hyp_ref.txt").read_text()
    assert lines.count("REF:") == test["utterances"] == 6
    assert sum(int(n.split("/")[0]) for n in re.findall(r"errors=(\d+/\d+)", lines)) == errors
    trained = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert trained["global_step"] > 0 and trained["hyper_parameters"]["rnn"]["name"] == name


def test_eval_from_checkpoint_reproduces_reported_per(short_runs, data_dir, tmp_path):
    run_dir, _ = short_runs["ligru"]
    reported = results(run_dir)["eval"]
    for split in ("dev", "test"):
        eval_dir = tmp_path / split
        run_entry(
            "eval",
            [f"ckpt_path={run_dir}/checkpoints/best.ckpt", f"split={split}", *SMALL_CORPUS],
            data_dir,
            eval_dir,
        )
        assert results(eval_dir)["eval"][split] == reported[split]


def test_bad_override_gives_hydra_message(tmp_path):
    done = run_entry("train", ["rnn=transformer"], tmp_path, tmp_path / "run", check=False)
    assert done.returncode != 0
    assert "Could not find 'rnn/transformer'" in done.stderr
    choices = r"Available options in 'rnn':\s+gru\s+ligru\s+lstm\s+rnn\s+sligru"
    assert re.search(choices, done.stderr)


def test_readme_commands_are_what_ci_and_tests_run():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(make \w+)", readme, flags=re.M)
    assert commands[:2] == ["make train", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "-m recipes.timit.train" in makefile.split("\ntrain:")[1].split("\n\n")[0]


@pytest.mark.parametrize(
    "option",
    ["trainer.precision=bf16-mixed", "compile=true", "debug=default", "debug=fdr", "averaging=ema"],
)
def test_option_trains_saves_evaluates_and_transcribes(option, data_dir, tmp_path):
    """A checkpoint does not depend on how its run computed (bf16, torch.compile with inductor),
    was cut short or averaged its weights."""
    run_dir = tmp_path / "run"
    tiny = ["rnn.hidden_size=16", "rnn.num_layers=1", "trainer.max_epochs=1"]
    run_entry("train", [option, *SMALL_CORPUS, *tiny], data_dir, run_dir)
    assert results(run_dir)["eval"]["dev"]["phones"] > 0
    if option.startswith("debug=fdr"):
        return  # a fast dev run writes no checkpoint
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = saved["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]
    if option.startswith("averaging="):  # the average is what is kept, the trained weights too
        trained = saved["current_model_state"]
        assert trained.keys() == state.keys()
        assert any(not torch.equal(state[k], trained[k]) for k in state)
    run_entry("eval", [f"ckpt_path={checkpoint}", "split=test", *SMALL_CORPUS], data_dir,
              tmp_path / "eval")  # fmt: skip
    assert results(tmp_path / "eval")["eval"]["test"]["phones"] > 0
    if option.startswith("averaging="):  # the run evaluated what a fresh process evaluates
        in_run, fresh = results(run_dir), results(tmp_path / "eval")
        assert in_run["eval"]["test"] == fresh["eval"]["test"]
        assert in_run["eval"]["dev"]["per"] == pytest.approx(in_run["best_dev_per"], abs=1e-3)
    wav = read_timit(data_dir / "builtin_timit")["test"][0].wav
    done = run_entry("transcribe", [f"ckpt_path={checkpoint}", f"audio=[{wav}]"], data_dir,
                     tmp_path / "transcribe")  # fmt: skip
    assert done.stdout.count(str(wav)) == 1


def test_a_layer_count_of_zero_stops_before_any_data_work(tmp_path):
    data_dir = tmp_path / "data"
    done = run_entry("train", ["rnn.num_layers=0"], data_dir, tmp_path / "run", check=False)
    assert done.returncode != 0
    assert "rnn.num_layers must be a positive integer, got 0" in done.stderr
    assert not data_dir.exists() or not any(data_dir.iterdir())  # no corpus, no features


def test_skipped_utterances_are_listed_in_the_run_directory(tiny_corpus, tmp_path):
    """With ``data.skip_bad=true`` a bad utterance is left out, logged and listed in the run."""
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, root)
    wav = sorted(root.glob("TRAIN/*/*/SX*.WAV"))[0]
    wav.with_suffix(".PHN").unlink()
    overrides = [
        "data=timit", f"data.root={root}", "data.skip_bad=true", "rnn.hidden_size=16",
        "rnn.num_layers=1", "trainer.max_epochs=1", "prepare_workers=1", "eval_splits=[dev]",
    ]  # fmt: skip
    run_entry("train", overrides, tmp_path / "data", tmp_path / "run")
    lines = (tmp_path / "run" / "skipped.tsv").read_text().splitlines()
    assert lines[0] == "path\treason" and len(lines) == 2, lines
    path, reason = lines[1].split("\t")
    assert path == str(wav) and "PHN" in reason, lines
    log = (tmp_path / "run" / "train.log").read_text()
    assert "1 corpus items were skipped" in log and "split has" in log  # not LDC-sized: warned
