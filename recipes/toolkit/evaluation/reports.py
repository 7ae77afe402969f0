"""Evaluation files of a run: per-utterance lines, per-speaker PER, phone confusions."""

import json
from collections import defaultdict
from pathlib import Path

from recipes.toolkit.evaluation.scoring import align, confusions, count_errors
from recipes.toolkit.run.atomic import atomic_write_text


def sclite_id(speaker: str, utt_id: str) -> str:
    """The utterance id of a sclite ``trn`` line, ``<speaker>_<utterance>`` (``-i spu_id``).

    sclite takes the text before the first ``_`` or ``-`` as the speaker, so those characters
    are dropped from ``speaker``; an ``utt_id`` that already starts with the speaker and a
    separator (TIMIT's ``fadg0_si1279``) is kept, written with ``_``.

    >>> sclite_id("fadg0", "fadg0_si1279"), sclite_id("fadg0", "si1279"), sclite_id("s_1", "u")
    ('fadg0_si1279', 'fadg0_si1279', 's1_u')
    """
    prefix = speaker.replace("_", "").replace("-", "")
    if speaker == prefix and utt_id.startswith((f"{speaker}_", f"{speaker}-")):
        return f"{speaker}_{utt_id[len(speaker) + 1 :]}"
    return f"{prefix}_{utt_id}"


def trn_line(phones: list[str], speaker: str, utt_id: str) -> str:
    """One line of a sclite ``trn`` file: the phones, then the id in parentheses.

    >>> trn_line(["sil", "b", "aa"], "mbjk0", "mbjk0_sx1")
    'sil b aa (mbjk0_sx1)'
    >>> trn_line([], "mbjk0", "sx1")
    '(mbjk0_sx1)'
    """
    return " ".join([*phones, f"({sclite_id(speaker, utt_id)})"])


def write_evaluation(records: list[dict], out_dir: Path, split: str) -> dict:
    """Write ``<split>_hyp_ref.txt``, ``<split>_speakers.tsv``, ``<split>_confusions.tsv`` and
    the sclite transcripts ``<split>_ref.trn`` and ``<split>_hyp.trn``.

    ``records`` hold ``utt_id``, ``speaker``, ``ref`` and ``hyp`` (phones of the scoring set);
    every file lists the utterances sorted by ``utt_id``. The ``trn`` lines end in the id
    ``(<speaker>_<utterance>)`` (:func:`sclite_id`), so that NIST's sclite scores them, per
    speaker too, with ``sclite -r <split>_ref.trn trn -h <split>_hyp.trn trn -i spu_id``.

    Returns ``{"per", "substitutions", "deletions", "insertions", "phones", "utterances"}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: r["utt_id"])
    alignments, by_speaker = [], defaultdict(list)
    total = None
    with (
        open(out_dir / f"{split}_ref.trn", "w") as ref_trn,
        open(out_dir / f"{split}_hyp.trn", "w") as hyp_trn,
    ):
        for record in records:
            ref_trn.write(trn_line(record["ref"], record["speaker"], record["utt_id"]) + "\n")
            hyp_trn.write(trn_line(record["hyp"], record["speaker"], record["utt_id"]) + "\n")
    with open(out_dir / f"{split}_hyp_ref.txt", "w") as lines:
        for record in records:
            counts = count_errors(record["ref"], record["hyp"])
            total = counts if total is None else total + counts
            alignments.append(align(record["ref"], record["hyp"]))
            by_speaker[record["speaker"]].append(counts)
            lines.write(
                f"{record['utt_id']}\terrors={counts.errors}/{counts.reference}\n"
                f"  REF: {' '.join(record['ref'])}\n  HYP: {' '.join(record['hyp'])}\n"
            )
    with open(out_dir / f"{split}_speakers.tsv", "w") as table:
        table.write("speaker\tutterances\tphones\terrors\tper\n")
        for speaker in sorted(by_speaker):
            counts = by_speaker[speaker]
            summed = counts[0]
            for c in counts[1:]:
                summed = summed + c
            table.write(
                f"{speaker}\t{len(counts)}\t{summed.reference}\t{summed.errors}\t{summed.per:.2f}\n"
            )
    with open(out_dir / f"{split}_confusions.tsv", "w") as table:
        table.write("reference\thypothesis\tcount\n")
        for (ref, hyp), n in confusions(alignments).most_common(50):
            table.write(f"{ref or '<ins>'}\t{hyp or '<del>'}\t{n}\n")
    if total is None:
        raise ValueError(f"no utterances were evaluated on split {split!r}")
    return {
        "per": round(total.per, 4),
        "substitutions": total.substitutions,
        "deletions": total.deletions,
        "insertions": total.insertions,
        "phones": total.reference,
        "utterances": len(records),
    }


def write_results(results: dict, run_dir: Path) -> Path:
    return atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")


def per_table(results: dict) -> str:
    """A small Markdown table of PER per evaluated split."""
    rows = ["| split | PER % | phones | sub | del | ins |", "| --- | --- | --- | --- | --- | --- |"]
    for split, r in results["eval"].items():
        rows.append(
            f"| {split} | {r['per']:.2f} | {r['phones']} | {r['substitutions']} | "
            f"{r['deletions']} | {r['insertions']} |"
        )
    return "\n".join(rows)
