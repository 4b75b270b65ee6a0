"""A result table: printed as markdown, saved as JSON, spliced into ``BENCHMARKS.md``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occsim.io import write_json_atomic


def _cell(value: Any) -> str:
    """One decimal; quantities under 1 (divergences, ratios, small distances)
    to three significant digits, so that they do not round to zero."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


@dataclass
class Report:
    """``rows`` of ``columns`` under a ``title``, ``notes`` (lines) under it; ``meta``
    records how they were made."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.meta.get("command"):
            lines += [f"Command: `{self.meta['command']}`", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in self.columns) + " |")
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + "\n"

    def save_json(self, path: str | Path) -> None:
        clean = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in self.rows
        ]
        record = {"name": self.name, "meta": self.meta, "rows": clean, "notes": self.notes}
        write_json_atomic(path, record)

    def update_benchmarks(self, path: str | Path) -> None:
        """Replace (or append) this report's section of a markdown file, between markers."""
        path = Path(path)
        text = path.read_text() if path.is_file() else "# Benchmarks\n"
        begin, end = f"<!-- occsim:{self.name} -->", f"<!-- /occsim:{self.name} -->"
        section = f"{begin}\n{self.markdown()}{end}"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + section + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        path.write_text(text)
