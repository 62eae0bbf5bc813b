"""Where a training run is: its counters, its best validation perplexity, its train loss so far.

A checkpoint stores it as a plain dict (``to_dict``), with these fields as its keys in this
order; ``from_dict`` reads it back, a field an older checkpoint lacks taking its default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields


@dataclass
class LossBlock:
    """The train loss summed over a block of ``size`` steps; recorded as one point at its end."""

    size: int
    nll: float = 0.0
    tokens: int = 0


@dataclass
class Progress:
    epoch: int = 0  # whole epochs done
    step_in_epoch: int = 0
    global_step: int = 0
    elapsed_s: float = 0.0  # training time, resumed sessions included
    best_val_ppl: float = math.inf
    bad_epochs: int = 0  # epochs since the best validation perplexity
    # this epoch's summed train NLL and tokens so far, so a resumed epoch reports all of it
    epoch_nll: float = 0.0
    epoch_tokens: int = 0
    best_step: int = -1  # the step whose weights best.pt holds (last.pt is written first)
    total_steps: int = 0  # the schedule's length when saved, and where its cosine restarted
    lr_anchor: list = field(default_factory=lambda: [0, 1.0])  # [step, fraction of --lr]
    loss_by_step: list = field(default_factory=list)  # [global step, block's mean train loss]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> Progress:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in saved.items() if key in names})

    def add_step(self, nll: float, tokens: int, block: LossBlock) -> None:
        """Count one optimizer step's summed train NLL and tokens, in the epoch and in ``block``,
        whose mean is recorded in ``loss_by_step`` when the block ends at this step."""
        self.epoch_nll += nll
        self.epoch_tokens += tokens
        block.nll, block.tokens = block.nll + nll, block.tokens + tokens
        if (self.global_step + 1) % block.size == 0:
            mean = block.nll / max(block.tokens, 1)  # a block of padding only counts no token
            self.loss_by_step.append([self.global_step + 1, round(mean, 4)])
            block.nll, block.tokens = 0.0, 0
        self.step_in_epoch += 1
        self.global_step += 1

    def train_loss(self) -> float:
        """This epoch's mean train loss so far, in nats per token."""
        return self.epoch_nll / max(self.epoch_tokens, 1)

    def validated(self, val_ppl: float) -> bool:
        """Count a validation: a better perplexity is the best (best.pt will hold this step's
        weights), any other one more bad epoch. Returns whether it was better."""
        if val_ppl < self.best_val_ppl:
            self.best_val_ppl, self.bad_epochs, self.best_step = val_ppl, 0, self.global_step
            return True
        self.bad_epochs += 1
        return False

    def next_epoch(self) -> None:
        self.step_in_epoch, self.epoch_nll, self.epoch_tokens = 0, 0.0, 0
