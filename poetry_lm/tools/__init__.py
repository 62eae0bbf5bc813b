"""Developers' tools around the product (``poetry-lm loadtest``): they may import the product's
modules and the command line's shared options (``poetry_lm.cli.common``), and nothing imports
them."""
