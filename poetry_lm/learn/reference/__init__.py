"""Numpy-only reference recurrent cells, output layer and language model, with hand-written
backpropagation through time.

No torch here on purpose: this is the version to read while studying BPTT (docs/bptt.md);
``python -m poetry_lm gradcheck`` checks it against torch and finite differences.
"""

from .cells import GRUCell, LSTMCell, RNNCell
from .course_gru import CourseGRUCell
from .lm import NumpyLM
from .output import OutputLayer, softmax_cross_entropy

__all__ = [
    "CourseGRUCell",
    "GRUCell",
    "LSTMCell",
    "NumpyLM",
    "OutputLayer",
    "RNNCell",
    "softmax_cross_entropy",
]
