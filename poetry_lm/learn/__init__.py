"""The learners' workbench: numpy reference cells, gradient checks, the homework plug-in and
exercises, the numpy language model, gradient flow.

It imports numpy, with torch only as the oracle the numpy code is checked against; never the
command line (``poetry_lm.cli``): the commands import it.
"""
