"""``python -m occsim``: the command line."""

from occsim.cli import main

main()
