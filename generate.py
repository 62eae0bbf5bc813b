"""Write poems: ``python generate.py 月`` or ``python generate.py --help``."""

from poetry_lm.cli.write import generate_command

if __name__ == "__main__":
    generate_command()
