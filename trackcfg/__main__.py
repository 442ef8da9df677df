"""``python -m trackcfg`` runs the command line."""

from trackcfg.cli.main import main

main()
