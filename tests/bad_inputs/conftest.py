"""Writes the bad-input tally when ``OCCSIM_BAD_INPUT_TABLE`` names a file."""

from __future__ import annotations

import os
from pathlib import Path

from bad_input_tally import markdown_table


def pytest_sessionfinish(session, exitstatus) -> None:
    target = os.environ.get("OCCSIM_BAD_INPUT_TABLE")
    if target:
        Path(target).write_text(markdown_table() + "\n" + markdown_table(detail=True))
