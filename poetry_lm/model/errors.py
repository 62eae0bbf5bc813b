"""The model's one user error, in a module without torch: ``poetry_lm.errors`` lists it, and
the commands that never read a checkpoint (check, --help) need not import torch to catch it."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with a one-sentence reason."""
