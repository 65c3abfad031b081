"""Run the command line as ``python -m stepline_cli``."""

from stepline_cli.main import main

main()
