"""Plots written to a run directory: learning curves, and posteriors of one utterance."""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def learning_curves(metrics_csv: Path, out_path: Path) -> Path | None:
    """Training loss, dev PER and learning rate per epoch from Lightning's ``metrics.csv``."""
    if not metrics_csv.exists():
        return None
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))

    def series(key: str) -> tuple[list[float], list[float]]:
        values = [r for r in rows if r.get(key)]
        # The learning-rate monitor logs once per epoch without filling the epoch column.
        epochs = [float(r["epoch"]) if r.get("epoch") else i for i, r in enumerate(values)]
        return epochs, [float(r[key]) for r in values]

    lr_key = next((k for k in (rows[0] if rows else {}) if k.startswith("lr-")), None)
    panels = [("train_loss_epoch", "CTC loss (train)"), ("dev_per", "dev PER %")]
    if lr_key:
        panels.append((lr_key, "learning rate"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels, strict=True):
        xs, ys = series(key)
        ax.plot(xs, ys, marker="o" if not key.startswith("train") else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if key.startswith("lr-"):
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def posteriors(
    feats: torch.Tensor,
    log_probs: torch.Tensor,
    labels: list[str],
    segments: list[tuple[int, int, str]],
    title: str,
    out_path: Path,
    blank: bool = True,
) -> Path:
    """Filterbanks, posteriors and reference phone segments beneath; ``blank``: output 0 is
    CTC's blank (drawn in grey), else every output is a label."""
    probs = log_probs.exp().T.numpy()
    fig, (ax_feat, ax_post, ax_ref) = plt.subplots(
        3, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1]}
    )
    ax_feat.imshow(feats.T.numpy(), origin="lower", aspect="auto", cmap="magma")
    ax_feat.set_ylabel("fbank bin")
    ax_feat.set_title(title)
    offset = 1 if blank else 0
    if blank:
        ax_post.plot(probs[0], color="0.7", linewidth=0.8, label="blank")
    best = probs[offset:].argmax(0)
    for phone_index in sorted(set(best.tolist())):
        curve = probs[phone_index + offset]
        if curve.max() < 0.3:
            continue
        ax_post.plot(curve, linewidth=1.0)
        peak = int(curve.argmax())
        ax_post.text(peak, curve[peak], labels[phone_index], fontsize=7, ha="center")
    ax_post.set_ylabel("posterior")
    ax_post.set_ylim(0, 1.05)
    for start, end, phone in segments:
        ax_ref.axvline(start, color="0.6", linewidth=0.5)
        ax_ref.text((start + end) / 2, 0.5, phone, fontsize=7, ha="center", va="center")
    ax_ref.set_yticks([])
    ax_ref.set_ylabel("reference")
    ax_ref.set_xlabel("frame (10 ms)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
