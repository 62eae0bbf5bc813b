"""Numpy-only reference recurrent cells with hand-written backpropagation through time.

No torch here on purpose: this is the version to read while studying BPTT (docs/bptt.md);
``python -m poetry_lm gradcheck`` checks it against torch and finite differences.
"""

from .cells import GRUCell, LSTMCell, RNNCell

__all__ = ["GRUCell", "LSTMCell", "RNNCell"]
