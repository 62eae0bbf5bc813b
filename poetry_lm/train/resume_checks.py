"""What ``last.pt`` must hold, beside a model that ``checked_config`` accepts, for a run to
continue from it: its settings, progress and history as plain data of the right kinds, an
optimizer state of this model's parameters, the random generator's state, and the weight
average, if one is kept. Each check returns why it fails (a phrase) or None; the shapes are
those of a model on the meta device, so nothing the checkpoint names is allocated."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from poetry_lm.model.checkpoint import meta_model, tensor_fault, tensors_fault
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.train.config import OPTIMIZERS, TrainConfig
from poetry_lm.train.model_setup import OPTIMIZER_STATE, make_optimizer
from poetry_lm.train.progress import Progress


def training_state_fault(ckpt: dict[str, Any], config: ModelConfig) -> str | None:
    """Why a run cannot continue from ``ckpt`` (whose model ``config`` describes), or None."""
    model = meta_model(config)
    return (
        plain_data_fault(ckpt)
        or optimizer_fault(ckpt["optimizer"], ckpt["train"].get("optimizer"), model)
        or rng_fault(ckpt["rng"])
        or average_fault(ckpt.get("averaged"), model)
    )


def plain_data_fault(ckpt: dict[str, Any]) -> str | None:
    """Its settings are TrainConfig's fields, its progress Progress's (each of its kind: an
    integer, a number, a list), its history a list of records."""
    train, progress, history = ckpt["train"], ckpt["progress"], ckpt["history"]
    if not isinstance(train, dict) or not isinstance(progress, dict):
        return "its training settings or progress are not tables"
    unknown = sorted(map(str, set(train) - {f.name for f in fields(TrainConfig)}))
    if unknown:
        return f"its training settings are not this version's (the setting {unknown[0]})"
    fresh = Progress()
    for f in fields(Progress):
        want = getattr(fresh, f.name)
        if f.name in progress and not _fits(progress[f.name], want):
            return f"its progress {f.name} is {progress[f.name]!r}, not {_kind(want)}"
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        return "its history is not a list of records"
    return None


def rng_fault(rng: Any) -> str | None:
    """The CPU random generator's state, as ``torch.get_rng_state`` gives it."""
    problem = tensor_fault(rng, torch.get_rng_state())
    return problem and f"its RNG state {problem}"


def optimizer_fault(state: Any, name: Any, model: PoetryLM) -> str | None:
    """An optimizer state of ``name`` (adam, sgd) for ``model``'s parameters: one parameter
    group over all of them, with the settings a new optimizer has, each of its kind and finite,
    and for each parameter stepped so far the state tensors of its shape (Adam's step a scalar),
    as ``torch.optim`` would load it."""
    if name not in OPTIMIZERS:
        return f"its settings name no optimizer poetry_lm has ({name!r})"
    params = list(model.parameters())
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        return "its optimizer state is not an optimizer's"
    groups = state.get("param_groups")
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
        return "its optimizer state does not hold one parameter group"
    if groups[0].get("params") != list(range(len(params))):
        return f"its optimizer state is not that of this model's {len(params)} parameters"
    fresh = make_optimizer(name, 1.0, params).param_groups[0]
    for key, value in fresh.items():
        saved = groups[0].get(key)
        if key != "params" and not _fits(saved, value):
            return f"its optimizer setting {key} is {saved!r}"
    saved, expected = {}, {}
    scalar = torch.empty((), dtype=torch.float32, device="meta")
    for index, per_param in state["state"].items():
        if type(index) is not int or not 0 <= index < len(params) or type(per_param) is not dict:
            return f"its optimizer state names a parameter {index!r} this model lacks"
        for key in OPTIMIZER_STATE[name]:
            expected[f"{key} of parameter {index}"] = scalar if key == "step" else params[index]
        saved.update({f"{key} of parameter {index}": t for key, t in per_param.items()})
    return tensors_fault(saved, expected, f"{name} state")


def average_fault(averaged: Any, model: PoetryLM) -> str | None:
    """The weight average, where one is kept: an AveragedModel's state of ``model``."""
    if averaged is None:
        return None
    with torch.device("meta"):
        expected = AveragedModel(model).state_dict()
    return tensors_fault(averaged, expected, "weight average")


def _kind(value: Any) -> str:
    """What a saved value is, as far as loading it goes: "an integer", "a number" (a float),
    "a bool", a tuple of such, or its type."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_kind(v) for v in value) + ")"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"a {type(value).__name__}"
    return "an integer" if isinstance(value, int) else "a number"


def _fits(saved: Any, want: Any) -> bool:
    """Whether ``saved`` can stand where ``want`` does: of its kind (an integer may stand for a
    number) and, if a number, finite, unless ``want`` itself is not (a best perplexity of inf)."""
    if isinstance(want, float) and _kind(saved) == "an integer":
        return True
    if isinstance(want, float) and math.isfinite(want) and _kind(saved) == "a number":
        return math.isfinite(saved)
    if isinstance(want, tuple) and isinstance(saved, tuple) and len(saved) == len(want):
        return all(_fits(s, w) for s, w in zip(saved, want))
    return _kind(saved) == _kind(want)
