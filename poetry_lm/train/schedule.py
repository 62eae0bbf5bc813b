"""The learning rate at each step: a linear warm-up, then constant or a cosine
decay; a resumed run whose length changed continues its cosine from the rate it had reached."""

from __future__ import annotations

import math
from collections.abc import Callable

from poetry_lm.train.config import TrainConfig
from poetry_lm.train.progress import Progress

LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of --lr


def warmup_factor(cfg: TrainConfig, step: int) -> float:
    """The linear warm-up's share of --lr at ``step``: (step + 1) / warmup_steps, at most 1."""
    return min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, anchor=(0, 1.0)) -> float:
    """The rate at ``step``: warm-up, then constant or a cosine from ``anchor`` = (step s0,
    fraction f0 of --lr there) down to LR_FLOOR at ``total_steps``. The anchor is (0, 1) unless a
    resumed run changed its length: the cosine then continues from where the rate was."""
    warm = warmup_factor(cfg, step)
    if cfg.lr_schedule == "constant":
        return cfg.lr * warm
    s0, f0 = anchor
    progress = min(1.0, max(0, step - s0) / max(total_steps - s0, 1))
    return cfg.lr * warm * (LR_FLOOR + (f0 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


def continue_schedule(
    cfg: TrainConfig, p: Progress, total: int, log: Callable[[str], None]
) -> None:
    """Set the schedule's length to ``total`` steps. A resumed run whose schedule changed length
    (--epochs, a new corpus) continues its cosine smoothly from the rate it had reached, instead
    of jumping to the new curve."""
    if p.total_steps and p.total_steps != total and cfg.lr_schedule == "cosine":
        step = p.global_step
        rate = learning_rate(cfg, step, p.total_steps, p.lr_anchor)
        p.lr_anchor = [step, rate / (cfg.lr * warmup_factor(cfg, step))]
        log(
            f"the schedule now runs {total} steps instead of {p.total_steps}: the cosine "
            f"continues from lr {rate:.3g} at step {step}"
        )
    p.total_steps = total
