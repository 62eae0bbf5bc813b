"""Training: the trainer loop, checkpoints of a run, distributed data parallel."""
