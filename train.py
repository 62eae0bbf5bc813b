"""Train a poem model: ``python train.py --help``."""
from poetry_lm.cli import train_command

if __name__ == "__main__":
    train_command()
