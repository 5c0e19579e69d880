"""``python -m server`` runs the ``companion`` command."""

from server.cli import main

main()
