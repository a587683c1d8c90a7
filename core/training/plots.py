"""Training curves and the confusion matrix as PNG files (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_plots(directory: Path, history: Sequence[dict[str, Any]], confusion: Sequence[Sequence[int]],
                labels: Sequence[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    steps = [r for r in history if r.get("event") == "step"]
    epochs = [r for r in history if r.get("event") == "epoch"]
    if steps:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss", lw=1)
        if epochs:
            ax.plot([r["step"] for r in epochs], [r["eval_loss"] for r in epochs], "o-", label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax.set_title("Training curves")
        fig.tight_layout()
        fig.savefig(directory / "loss.png", dpi=100)
        plt.close(fig)
        written.append(directory / "loss.png")
    if confusion:
        n = len(labels)
        fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
        ax.imshow(confusion, cmap="Blues")
        ax.set_xticks(range(n), labels, rotation=30, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        peak = max(max(row) for row in confusion) or 1
        for i in range(n):
            for j in range(n):
                v = confusion[i][j]
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black")
        ax.set_title("Confusion matrix (eval)")
        fig.tight_layout()
        fig.savefig(directory / "confusion_matrix.png", dpi=100)
        plt.close(fig)
        written.append(directory / "confusion_matrix.png")
    return written
