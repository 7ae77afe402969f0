"""The built-in corpus root records its generator settings: other settings are refused, the same
are reused; what a killed generation leaves is removed by the next run; files get the usual mode."""

import json
import logging
from pathlib import Path

import pytest

import recipes.timit.builtin.generate as gen
from recipes.timit.builtin.generate import (
    MARKER,
    CorpusSettingsMismatch,
    GeneratorParams,
    ensure_builtin_corpus,
    generate_corpus,
)
from tests.kill_helpers import run_until_marker_then_kill

ONE = {"seed": 3, "num_train_speakers": 1, "num_dev_speakers": 1, "num_test_speakers": 1,
       "sentences_per_speaker": 1}  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_other_settings_are_refused_naming_both(tmp_path):
    root = ensure_builtin_corpus(tmp_path / "builtin_timit", **ONE)
    before = _files(root)
    mtime = (root / MARKER).stat().st_mtime_ns
    with pytest.raises(CorpusSettingsMismatch) as raised:
        ensure_builtin_corpus(root, **{**ONE, "seed": 9, "sentences_per_speaker": 2})
    message = str(raised.value)
    assert str(root) in message and "(different seed, sentences_per_speaker)" in message
    recorded, requested = message.split("recorded:")[1].split("requested:")
    assert '"seed": 3' in recorded and '"sentences_per_speaker": 1' in recorded
    assert '"seed": 9' in requested and '"sentences_per_speaker": 2' in requested
    assert "another data.root" in message and f"delete {root}" in message
    assert isinstance(raised.value, RuntimeError)
    assert _files(root) == before and (root / MARKER).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [".builtin_timit.lock", "builtin_timit"]


def test_same_settings_are_reused_without_generating(tmp_path, monkeypatch, caplog):
    root = ensure_builtin_corpus(tmp_path / "builtin_timit", **ONE)
    mtime = (root / MARKER).stat().st_mtime_ns
    assert json.loads((root / MARKER).read_text())["params"] == ONE

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(gen, "generate_corpus", no_generation)
    with caplog.at_level(logging.INFO, logger="recipes"):
        assert ensure_builtin_corpus(root, **ONE) == root
    assert "reusing built-in TIMIT corpus" in caplog.text
    assert (root / MARKER).stat().st_mtime_ns == mtime


def test_an_unreadable_settings_record_is_refused(tmp_path):
    root = ensure_builtin_corpus(tmp_path / "builtin_timit", **ONE)
    (root / MARKER).write_text('{"generator_version": 1, "par')
    with pytest.raises(CorpusSettingsMismatch, match="not a settings record") as raised:
        ensure_builtin_corpus(root, **ONE)
    assert str(root / MARKER) in str(raised.value) and f"delete {root}" in str(raised.value)


CHILD = """
import json, signal, sys
from pathlib import Path
import recipes.timit.builtin.generate as gen

root, params, marker = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
real_synthesize, calls = gen.synthesize, []

def synthesize_until_killed(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # two utterances are on disk: a partial corpus
        marker.write_text("generating")
        signal.pause()
    return real_synthesize(*args, **kwargs)

gen.synthesize = synthesize_until_killed
gen.ensure_builtin_corpus(root, **params)
"""


def test_what_a_killed_generation_leaves_is_removed_by_the_next_run(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    root = data / "builtin_timit"
    marker = tmp_path / "generating"
    run_until_marker_then_kill(CHILD, [str(root), json.dumps(ONE), str(marker)], marker,
                               tmp_path / "child.log")  # fmt: skip
    (partial,) = [p for p in data.iterdir() if p.name.startswith(".builtin_timit.tmp-")]
    assert [p for p in partial.rglob("*.WAV")] and not root.exists()
    old = data / ".builtin_timit.old-0123abcd"  # what an interrupted earlier version left
    (old / "TRAIN").mkdir(parents=True)
    unrelated = data / ".builtin_timit.tmp-notes"
    unrelated.write_text("not ours")

    with caplog.at_level(logging.INFO, logger="recipes"):
        ensure_builtin_corpus(root, **ONE)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "removing" in warned[0]
    assert {str(partial), str(old)} == {w.split()[1].rstrip(",") for w in warned}
    assert sorted(p.name for p in data.iterdir()) == [
        ".builtin_timit.lock", ".builtin_timit.tmp-notes", "builtin_timit",
    ]  # fmt: skip
    generate_corpus(tmp_path / "fresh", GeneratorParams(**ONE))
    corpus = _files(root)
    assert json.loads(corpus.pop(MARKER))["params"] == ONE
    assert corpus == _files(tmp_path / "fresh")


def test_corpus_files_get_the_usual_mode(umask_022, tmp_path):
    root = ensure_builtin_corpus(tmp_path / "builtin_timit", **ONE)
    paths = [root, *root.rglob("*")]
    files = [p for p in paths if p.is_file()]
    assert root / MARKER in files and len(files) > 10
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
    assert {oct(p.stat().st_mode & 0o777) for p in paths if p.is_dir()} == {"0o755"}
