"""Evaluation commands: the numbers users compare (``occsim eval ...``, ``occsim bench``)."""

from occsim.evaluate.closed_loop import closed_loop_agreement
from occsim.evaluate.forecast import evaluate_forecast
from occsim.evaluate.recon import evaluate_reconstruction
from occsim.evaluate.report import Report

__all__ = ["Report", "closed_loop_agreement", "evaluate_forecast", "evaluate_reconstruction"]
