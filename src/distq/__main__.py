"""``python -m distq`` runs the command line."""

from distq.ops.cli import main

main()
