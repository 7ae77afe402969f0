"""Phones for audio files (NIST SPHERE, WAV, FLAC, any rate) from a checkpoint of either task.

python -m recipes.timit.transcribe ckpt_path=.../best.ckpt 'audio=[a.wav,b.flac]'
python -m recipes.timit.transcribe ckpt_path=... 'audio=[a.wav]' timestamps=true ctm=a.ctm

Prints ``<path>\\t<phones>`` for every file it could decode. A file it could not (missing,
unreadable, not audio, empty, too short for one analysis frame) is named with its reason on
stderr, the others are decoded all the same, and the command ends with a summary line
("N of M files could not be transcribed: ...") and exit status 1. ``timestamps=true`` also
writes each phone's start and duration as a CTM file (``ctm=``, by default
``transcription.ctm`` in the run directory), utterance ids being the paths as given.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from recipes.timit.checkpoints import implied_hparams
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.inference import Recognizer
from recipes.toolkit.transcription import failure_summary, transcribe, write_transcription_ctm

register_resolvers()  # ${shared_conf:}: the primary configs find the shared groups with it


@hydra.main(version_base="1.3", config_path="conf", config_name="transcribe")
def main(cfg: DictConfig) -> None:
    audio = cfg.audio if isinstance(cfg.audio, ListConfig) else [cfg.audio]
    paths = [Path(str(p)).expanduser() for p in audio]
    recognizer = Recognizer.from_checkpoint(
        cfg.ckpt_path, cfg.get("decoding"), fill_missing=implied_hparams
    )
    results = transcribe(recognizer, paths, cfg.fold39)
    for result in results:
        if result.ok:
            print(f"{result.path}\t{' '.join(result.labels)}")
        else:
            print(f"could not transcribe: {result.error}", file=sys.stderr)
    if cfg.get("timestamps") or cfg.get("ctm"):
        ctm = cfg.get("ctm") or Path(cfg.paths.output_dir) / "transcription.ctm"
        written = write_transcription_ctm(Path(str(ctm)).expanduser(), results)
        print(f"phone timestamps (CTM): {written}", file=sys.stderr)
    summary = failure_summary(results)
    if summary:
        print(summary, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
