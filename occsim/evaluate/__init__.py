"""Evaluation commands: the numbers users compare (``occsim eval ...``, ``occsim bench``)."""

from occsim.evaluate.adherence import evaluate_adherence, recover_trajectory
from occsim.evaluate.closed_loop import closed_loop_fidelity
from occsim.evaluate.forecast import evaluate_forecast
from occsim.evaluate.recon import evaluate_reconstruction
from occsim.evaluate.report import Report

__all__ = [
    "Report",
    "closed_loop_fidelity",
    "evaluate_adherence",
    "evaluate_forecast",
    "evaluate_reconstruction",
    "recover_trajectory",
]
