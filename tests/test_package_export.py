"""A packaged model runs where only torch and torchaudio are and gives what the repository gives."""

import json
import shutil
import subprocess
import sys
import sysconfig
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from recipes.toolkit.inference import Recognizer
from recipes.toolkit.package import export as export_module
from recipes.toolkit.package.card import model_card
from recipes.toolkit.package.convert import runtime_config
from recipes.toolkit.package.export import export_package
from recipes.toolkit.package.vendor import MODULES, RUNTIME_PACKAGE, check_imports, rewrite_imports
from recipes.toolkit.workflow import load_recognizer
from tests.inference_helpers import CORPUS, build, save_checkpoint, write_audio
from tests.recipe_helpers import run_entry

BEAM = {"method": "beam", "beam_width": 4, "lm_weight": 0.5}

# Run by a Python started without site (-S) and isolated (-I): sys.path holds the standard
# library, the package folder and the environment's site-packages, nothing of the repository;
# importing any of the training stack's packages (or soundfile, when asked) fails and is noted.
ISOLATED = r"""
import json, sys
folder, site_dirs, out, blocked, decodings, *audio = sys.argv[1:]
BLOCKED = {"lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf",
           "torchmetrics", "recipes", "tests", *blocked.split(",")} - {""}
attempts = []

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (refused)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
sys.path[:0] = [folder]
sys.path += site_dirs.split(":")
import torch
import recognizer_runtime
import rnnlib

results = {"rnnlib": rnnlib.__file__, "runtime": recognizer_runtime.__file__, "runs": []}
for decoding in json.loads(decodings):
    recognizer = recognizer_runtime.load(decoding=decoding)
    batch = recognizer.transcribe_batch(audio)
    results["runs"].append({
        "labels": recognizer.labels,
        "posteriors": recognizer.posteriors_batch(audio, batch_size=1),
        "phones": [[(p.phone, p.start, p.end) for p in phones] for phones in batch],
        "training_phones": [[p.phone for p in recognizer.transcribe(a, False)] for a in audio],
    })
results["attempts"] = attempts
results["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
torch.save(results, out)
"""


def run_isolated(
    folder: Path, audio: list[Path], decodings: list, out: Path, blocked: str = ""
) -> dict | subprocess.CompletedProcess:
    """The packaged model's results, or the failed process."""
    site_dirs = ":".join(
        sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    )
    command = [sys.executable, "-I", "-S", "-c", ISOLATED, str(folder), site_dirs, str(out),
               blocked, json.dumps(decodings), *map(str, audio)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=out.parent)
    if done.returncode != 0:
        return done
    return torch.load(out, weights_only=False)


def in_repository(checkpoint: Path, audio: list[Path], decoding: dict | None) -> dict:
    recognizer = Recognizer.from_checkpoint(checkpoint, decoding)
    return {
        "labels": recognizer.labels,
        "posteriors": [recognizer.posteriors(path) for path in audio],
        "phones": [[(p.phone, p.start, p.end) for p in recognizer.transcribe(a)] for a in audio],
        "training_phones": [
            [p.phone for p in recognizer.transcribe(a, score=False)] for a in audio
        ],
    }


def assert_same(packaged: dict, repository: dict) -> None:
    assert packaged["labels"] == repository["labels"]
    for ours, theirs in zip(packaged["posteriors"], repository["posteriors"], strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert packaged["phones"] == repository["phones"]
    assert packaged["training_phones"] == repository["training_phones"]
    assert any(packaged["phones"]), "no phones at all: nothing was compared"


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> list[Path]:
    return write_audio(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def ctc_package(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    """A CTC checkpoint (a convolutional front end, Light GRU with batch norm) exported by the
    entry point, as a user runs it."""
    folder = tmp_path_factory.mktemp("ctc")
    checkpoint = save_checkpoint(build("ctc", seed=1, frontend=[32]), folder / "best.ckpt")
    overrides = [f"ckpt_path={checkpoint}", f"out={folder / 'package'}"]
    done = run_entry("export", overrides, data_dir, folder / "run")
    assert f"packaged model: {folder / 'package'}" in done.stdout
    return checkpoint, folder / "package"


def test_ctc_package_without_the_training_stack_equals_the_checkpoint(ctc_package, audio, tmp_path):
    checkpoint, folder = ctc_package
    packaged = run_isolated(folder, audio, [None, BEAM], tmp_path / "out.pt")
    assert isinstance(packaged, dict), packaged.stderr[-4000:]
    assert packaged["attempts"] == [] and packaged["loaded"] == []
    assert Path(packaged["rnnlib"]).is_relative_to(folder)
    assert Path(packaged["runtime"]).is_relative_to(folder / RUNTIME_PACKAGE)
    greedy, beam = packaged["runs"]
    assert_same(greedy, in_repository(checkpoint, audio, None))
    assert_same(beam, in_repository(checkpoint, audio, BEAM))
    assert greedy["phones"] != beam["phones"]  # the beam and its bigram did change something


def test_framewise_package_equals_the_checkpoint_and_reads_wav_without_soundfile(audio, tmp_path):
    """Speaker normalisation, deltas, an LSTM, the phone loop; soundfile refused, so the PCM
    WAV files are read with the standard library (and equal what soundfile reads)."""
    checkpoint = save_checkpoint(build("framewise", seed=2), tmp_path / "framewise.ckpt")
    folder = export_package(load_recognizer(checkpoint), tmp_path / "package", checkpoint)
    wavs = [path for path in audio if path.suffix == ".wav"]
    packaged = run_isolated(folder, wavs, [None, {"method": "greedy"}], tmp_path / "out.pt",
                            blocked="soundfile")  # fmt: skip
    assert isinstance(packaged, dict), packaged.stderr[-4000:]
    assert set(packaged["attempts"]) == {"soundfile"}  # tried, refused, fell back to `wave`
    assert set(packaged["loaded"]) == set()
    viterbi, greedy = packaged["runs"]
    assert_same(viterbi, in_repository(checkpoint, wavs, None))
    assert_same(greedy, in_repository(checkpoint, wavs, {"method": "greedy"}))


def test_isolation_catches_a_package_that_needs_the_training_stack(ctc_package, audio, tmp_path):
    """The check above would notice: the same package with one import of OmegaConf fails."""
    _, folder = ctc_package
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    init = broken / RUNTIME_PACKAGE / "__init__.py"
    init.write_text(init.read_text() + "\nfrom omegaconf import OmegaConf\n")
    done = run_isolated(broken, audio[:1], [None], tmp_path / "out.pt")
    assert isinstance(done, subprocess.CompletedProcess) and done.returncode != 0
    assert "No module named 'omegaconf' (refused)" in done.stderr


def test_package_holds_the_model_its_configuration_and_card(ctc_package):
    checkpoint, folder = ctc_package
    names = {path.name for path in folder.iterdir()}
    assert names == {"config.json", "weights.pt", "MODEL_CARD.md", RUNTIME_PACKAGE, "rnnlib"}
    assert {p.stem for p in (folder / RUNTIME_PACKAGE).glob("*.py")} == {
        *MODULES.values(),
        "__init__",
    }

    def refuse(constant: str):
        raise ValueError(f"not standard JSON: {constant}")

    config = json.loads((folder / "config.json").read_text(), parse_constant=refuse)
    module = load_recognizer(checkpoint)
    assert config == json.loads(json.dumps(runtime_config(module)))
    assert torch.equal(torch.tensor(config["normalization"]["mean"], dtype=torch.float64),
                       module.feature_mean)  # fmt: skip
    assert config["score_map"]["vcl"] == "sil" and config["rnn"]["name"] == "ligru"
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert weights.keys() == module.model.state_dict().keys()
    for key, value in module.model.state_dict().items():
        assert torch.equal(weights[key], value), key
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"`{checkpoint}`" in card and "epoch 3, step 120" in card
    assert f"Corpus: builtin at `{CORPUS['root']}`" in card
    assert f"torch {torch.__version__}" in card


def test_repository_loads_a_package_as_it_loads_the_checkpoint(ctc_package, audio):
    checkpoint, folder = ctc_package
    packaged = Recognizer.from_package(folder, {"method": "beam"})
    loaded = Recognizer.from_checkpoint(checkpoint, {"method": "beam"})
    assert packaged.config == loaded.config and packaged.config["decoding"]["method"] == "beam"
    torch.testing.assert_close(packaged.posteriors(audio[0]), loaded.posteriors(audio[0]))
    assert packaged.transcribe(audio[0]) == loaded.transcribe(audio[0])


def test_card_reports_the_runs_per_and_code(tmp_path):
    run = tmp_path / "runs" / "r1"
    checkpoint = save_checkpoint(build("ctc"), run / "checkpoints" / "best.ckpt")
    results = {
        "best_checkpoint": str(checkpoint),
        "best_dev_per": 21.7839,
        "eval": {"dev": {"per": 21.7839, "utterances": 80, "phones": 2814},
                 "test": {"per": 25.7522, "utterances": 64, "phones": 2260}},
    }  # fmt: skip
    (run / "results.json").write_text(json.dumps(results))
    (run / "run_info.json").write_text(
        json.dumps({"git": {"commit": "94d4ca8", "dirty": False}, "packages": {"torch": "2.14.1"}})
    )
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- rnn=ligru\n- seed=3\n")
    module = load_recognizer(checkpoint)
    card = model_card(module, runtime_config(module), checkpoint, datetime(2026, 1, 2, tzinfo=UTC))
    assert "| dev | 21.78 | 80 | 2814 |" in card and "| test | 25.75 | 64 | 2260 |" in card
    assert "Best dev PER during training: 21.78 %" in card
    assert "- seed=3" in card and "git commit `94d4ca8`" in card
    assert "Trained with torch 2.14.1." in card and "Exported 2026-01-02 00:00 UTC" in card
    assert '"lr": 0.002' in card  # the training configuration
    elsewhere = model_card(module, runtime_config(module), None, datetime.now(UTC))
    assert "No `results.json` with PER" in elsewhere


def test_export_replaces_a_package_only_when_asked_and_never_half(tmp_path, monkeypatch):
    module = build("ctc")
    out = tmp_path / "package"
    out.mkdir()
    (out / "old.txt").write_text("an earlier export")
    with pytest.raises(FileExistsError, match="pass overwrite=true"):
        export_package(module, out)
    assert (out / "old.txt").exists()

    def broken(folder: Path):
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "write_runtime", broken)
    with pytest.raises(OSError, match="disk full"):
        export_package(module, out, overwrite=True)
    assert (out / "old.txt").exists()  # an export that failed leaves the old one
    monkeypatch.undo()
    export_package(module, out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"]  # no staging folder left


def test_vendoring_refuses_what_a_package_cannot_carry():
    with pytest.raises(ValueError, match="imports recipes.toolkit.run.atomic, which the runtime"):
        rewrite_imports("from recipes.toolkit.run.atomic import atomic_write\n", "x")
    with pytest.raises(ValueError, match="cannot be vendored"):
        rewrite_imports("import recipes.toolkit.model\n", "x")
    with pytest.raises(ValueError, match="imports omegaconf"):
        check_imports("def f():\n    from omegaconf import OmegaConf\n", "x")
    source = "def f():\n    from recipes.toolkit.data.segments import frame_centres\n"
    assert "from .segments import frame_centres" in rewrite_imports(source, "x")


def test_an_int8_package_is_smaller_close_to_float_and_runs_without_the_training_stack(
    audio, tmp_path
):
    module = build("ctc", seed=2)
    checkpoint = save_checkpoint(module, tmp_path / "best.ckpt")
    plain = export_package(module, tmp_path / "float", checkpoint)
    small = export_package(module, tmp_path / "int8", checkpoint, quantize="int8")
    assert json.loads((small / "config.json").read_text())["quantization"] == "int8"
    size = (small / "weights.pt").stat().st_size / (plain / "weights.pt").stat().st_size
    assert size < 0.7  # the Light GRU's input projections and the output layer: int8
    with pytest.raises(ValueError, match="quantize must be one of"):
        export_package(module, tmp_path / "other", checkpoint, quantize="int4")
    exact, quantized = Recognizer.from_package(plain), Recognizer.from_package(small)
    assert type(quantized.model.output).__name__ == "Linear"
    assert type(quantized.model.output) is not torch.nn.Linear  # the quantised module
    for path in audio:
        a, b = exact.posteriors(path).exp(), quantized.posteriors(path).exp()
        assert 0 < (a - b).abs().mean() < 0.02  # changed, by little
        agree = (a.argmax(-1) == b.argmax(-1)).double().mean()
        assert agree > 0.5  # random, scaled-up weights: near ties (a trained model: README)
    packaged = run_isolated(small, audio, [None], tmp_path / "out.pt")
    assert isinstance(packaged, dict), packaged.stderr[-4000:]
    assert packaged["attempts"] == [] and packaged["loaded"] == []
    for ours, theirs in zip(packaged["runs"][0]["posteriors"], map(quantized.posteriors, audio),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(ours, theirs)
