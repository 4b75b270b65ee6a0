"""What the bad-input suite shares: ``expect_error`` (a clear error or the test fails),
the tally of errors per boundary and kind, and snapshots of folders and objects.

``OCCSIM_BAD_INPUT_TABLE=path pytest tests/bad_inputs`` writes the tally as a markdown
table (boundary x kind of bad input x clear errors).
"""

from __future__ import annotations

import copy
import hashlib
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


def markdown_table() -> str:
    """The tally as markdown: one row per boundary and kind of bad input."""
    lines = [
        "| boundary | kind of bad input | tried | clear errors | harmless (same data) "
        "| crashes | silent | lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(set(TALLY) | set(HARMLESS))
    for boundary, kind in keys:
        errors, same = TALLY[(boundary, kind)], HARMLESS[(boundary, kind)]
        lines.append(f"| {boundary} | {kind} | {errors + same} | {errors} | {same} | 0 | 0 | 0 |")
    errors, same = sum(TALLY.values()), sum(HARMLESS.values())
    lines.append(f"| **all** | | {errors + same} | {errors} | {same} | 0 | 0 | 0 |")
    return "\n".join(lines) + "\n"
