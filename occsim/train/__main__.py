"""``python -m occsim.train`` (and ``accelerate launch -m occsim.train``)."""

from occsim.train.cli import main

main()
