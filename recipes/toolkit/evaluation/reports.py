"""Evaluation files of a run: per-utterance lines, per-speaker PER, phone confusions."""

import json
from collections import defaultdict
from pathlib import Path

from recipes.toolkit.evaluation.scoring import align, confusions, count_errors
from recipes.toolkit.run.atomic import atomic_write_text


def write_evaluation(records: list[dict], out_dir: Path, split: str) -> dict:
    """Write ``<split>_hyp_ref.txt``, ``<split>_speakers.tsv`` and ``<split>_confusions.tsv``.

    Returns ``{"per", "substitutions", "deletions", "insertions", "phones", "utterances"}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: r["utt_id"])
    alignments, by_speaker = [], defaultdict(list)
    total = None
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
