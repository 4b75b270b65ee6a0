"""What the bad-input suite shares: ``expect_error`` (a clear error or the test fails),
the tally of errors per boundary and kind, and snapshots of folders and objects.

``OCCSIM_BAD_INPUT_TABLE=path pytest tests/bad_inputs`` writes the tally as a markdown
table (boundary x kind of bad input x clear errors) when the run ends. (No conftest.py
here: the suite's tests import ``conftest`` by name, which must stay ``tests/conftest.py``.)
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

TALLY: Counter[tuple[str, str]] = Counter()  # clear errors per (boundary, kind)
HARMLESS: Counter[tuple[str, str]] = Counter()  # corruptions that left the data identical

# Small and derandomized: the suite runs in the default test command.
FUZZ = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
FUZZ_SLOW = settings(FUZZ, max_examples=4)  # each example replays or loads a model

CLEAR = (ValueError, TypeError, FileNotFoundError)


def expect_error(
    boundary: str,
    kind: str,
    call: Callable[[], Any],
    errors: tuple[type[BaseException], ...] = CLEAR,
    match: str | None = None,
) -> BaseException:
    """Run ``call``; it must raise one of ``errors`` (matching ``match``), else the test
    fails as a silent result (no error) or a crash (any other exception)."""
    try:
        call()
    except errors as error:
        if match is not None and not re.search(match, str(error)):
            pytest.fail(f"{boundary} / {kind}: message {str(error)!r} lacks {match!r}")
        TALLY[(boundary, kind)] += 1
        return error
    except Exception as error:
        pytest.fail(f"{boundary} / {kind}: crashed with {type(error).__name__}: {error}")
    pytest.fail(f"{boundary} / {kind}: accepted silently")


def clear_error(boundary: str, kind: str) -> None:
    """Count a clear error the test checked itself."""
    TALLY[(boundary, kind)] += 1


def harmless(boundary: str, kind: str) -> None:
    """Count a corruption that changed nothing the reader returns (e.g. a zip timestamp)."""
    HARMLESS[(boundary, kind)] += 1


def dead_pid() -> int:
    """A process id nobody runs (temporaries named with it are stale)."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) -> digest of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def state_of(obj: Any) -> dict[str, Any]:
    """A deep copy of an object's attributes, to compare before and after a failed call."""
    return copy.deepcopy({k: v for k, v in vars(obj).items() if not k.startswith("__")})


def _row(name: str, kinds: int | str, errors: int, same: int) -> str:
    return f"| {name} | {kinds} | {errors + same} | {errors} | {same} | 0 | 0 | 0 |"


def markdown_table(detail: bool = False) -> str:
    """The tally as markdown: a row per boundary (``detail``: per kind of bad input)."""
    header = "kind of bad input" if detail else "kinds of bad input"
    lines = [
        f"| boundary | {header} | tried | clear errors | harmless (same data) "
        "| crashes | silent | lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(set(TALLY) | set(HARMLESS))
    boundaries = sorted({boundary for boundary, _ in keys})
    for boundary in boundaries:
        kinds = [key for key in keys if key[0] == boundary]
        if detail:
            for key in kinds:
                lines.append(_row(boundary, key[1], TALLY[key], HARMLESS[key]))
        else:
            errors = sum(TALLY[key] for key in kinds)
            same = sum(HARMLESS[key] for key in kinds)
            lines.append(_row(boundary, len(kinds), errors, same))
    lines.append(_row("**all**", len(keys), sum(TALLY.values()), sum(HARMLESS.values())))
    return "\n".join(lines) + "\n"


def _write_table() -> None:
    target = os.environ.get("OCCSIM_BAD_INPUT_TABLE")
    if target and (TALLY or HARMLESS):
        Path(target).write_text(markdown_table() + "\n" + markdown_table(detail=True))


atexit.register(_write_table)
