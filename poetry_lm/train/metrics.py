"""A run's record for people: ``metrics.json`` (settings, history, train loss by step, result)
and ``training.png`` (its curves)."""

from __future__ import annotations

import json
from pathlib import Path

from poetry_lm.model.checkpoint import CheckpointError


def write_metrics(
    out: Path, train: dict, history: list[dict], loss_by_step: list, result: dict | None
) -> None:
    """Write ``out/metrics.json`` and ``out/training.png``; CheckpointError says why not."""
    steps = [{"step": s, "train_loss": loss} for s, loss in loss_by_step]
    metrics = {"train": train, "history": history, "steps": steps, "result": result}
    try:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
        plot_history(history, out / "training.png", steps)
    except OSError as err:
        raise CheckpointError(
            f"cannot write the metrics of {out} ({err.strerror or err})"
        ) from None


def plot_history(history: list[dict], path: Path, steps: list[dict] = ()) -> None:
    """Train loss per block of steps (line) and per epoch (dots), and validation perplexity per
    epoch, side by side, both against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    if steps:
        left.plot([s["step"] for s in steps], [s["train_loss"] for s in steps], lw=0.8)
    left.plot(at, [h["train_loss"] for h in history], "o", label="epoch mean")
    left.set(xlabel="optimizer step", ylabel="train loss (nats/token)", title="training loss")
    right.plot(at, [h["val_ppl"] for h in history], marker="o", color="tab:orange")
    right.set(xlabel="optimizer step", ylabel="perplexity", title="validation perplexity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
