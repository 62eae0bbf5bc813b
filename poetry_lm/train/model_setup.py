"""What a run trains: the model, its loss module (the call data parallelism hooks into), the
optimizer, and an exponential moving average of the weights."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.train.config import TrainConfig
from poetry_lm.train.distributed import Context


class SequenceLoss(nn.Module):
    """The model's summed sequence NLL as ``forward``, the call that DistributedDataParallel
    hooks into."""

    def __init__(self, model: PoetryLM, pad: int):
        super().__init__()
        self.model, self.pad = model, pad

    def forward(self, tokens: torch.Tensor, state=None):
        return self.model.sequence_nll(tokens, self.pad, state)


# the state each optimizer keeps for a parameter it has stepped (what last.pt must hold)
OPTIMIZER_STATE = {"adam": ("step", "exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}


def make_optimizer(name: str, lr: float, params) -> torch.optim.Optimizer:
    """``name`` (adam, or SGD with momentum 0.9) over ``params``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def build_model(cfg: TrainConfig, model_cfg: ModelConfig, ctx: Context, pad: int):
    """The model on the context's device, its loss module (wrapped for data parallelism) and
    the optimizer. Seeded first, so every rank starts from the same weights."""
    torch.manual_seed(cfg.seed)
    model = PoetryLM(model_cfg).to(ctx.device)
    # the adaptive softmax leaves the clusters no target reached this step without gradients
    loss = ctx.wrap(SequenceLoss(model, pad), find_unused=model_cfg.softmax == "adaptive")
    return model, loss, make_optimizer(cfg.optimizer, cfg.lr, model.parameters())


def weight_average(
    model: PoetryLM, decay: float, ckpt: dict | None, log: Callable[[str], None]
) -> AveragedModel | None:
    """The exponential moving average of the weights (``--ema-decay``), or None: the run's own
    when it is resumed with the same decay, else a new one from the weights as they are now
    (restored first), which a resumed run says. Weight-drop and dropout act on the trained
    weights only, so the average is of the weights themselves."""
    kept = ckpt.get("averaged") if ckpt else None  # the resumed run's average
    old = ckpt["train"].get("ema_decay") if ckpt else None
    if not decay:
        if kept is not None:
            log(f"the run's weight average (--ema-decay {old}) is dropped: --ema-decay 0")
        return None
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    if kept is not None and old == decay:
        averaged.load_state_dict(kept)
    elif ckpt is not None:
        how = "restarts" if kept is not None else "starts"
        log(f"the weight average {how} from the resumed weights (--ema-decay {decay})")
    return averaged
