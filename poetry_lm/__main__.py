from poetry_lm.cli import main

main()
