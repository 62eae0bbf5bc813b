"""Train a poem model: ``python train.py --help``."""

from poetry_lm.cli.train import train_command

if __name__ == "__main__":
    train_command()
