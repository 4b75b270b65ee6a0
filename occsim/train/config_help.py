"""Help text of the training configs, derived from the dataclasses themselves: every key
with its type, default and docstring, so ``occsim train STAGE --help`` never drifts from
``occsim/train/config.py``."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import textwrap
from functools import cache
from typing import Any, get_type_hints


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstring of each field of dataclass ``cls``: the string literal under the field
    (attribute docstrings), else its entry in the class docstring's ``Attributes:``."""
    docs = _attributes_section(inspect.getdoc(cls) or "")
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (e.g. a frozen build): the section alone
        return docs
    body = tree.body[0].body
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _attributes_section(docstring: str) -> dict[str, str]:
    """``name: text`` entries (continuation lines indented) of a Google-style
    ``Attributes:`` section."""
    docs: dict[str, str] = {}
    lines = docstring.splitlines()
    if "Attributes:" not in lines:
        return docs
    name = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section
        match = re.match(r"^\s{4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match:
            name = match.group(1)
            docs[name] = match.group(2)
        elif name is not None and line.strip():
            docs[name] += " " + line.strip()
    return docs


def config_keys(config: Any, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``(dotted key, type name, default, docstring)`` of every leaf field of a dataclass
    (class or instance: the values are the defaults), sections flattened (``data.clip_len``).
    A section's values come from the instance, since a config may default a section to
    other values than its class (the DiT's ``data.clip_len``)."""
    instance = config() if isinstance(config, type) else config
    cls = type(instance)
    hints, docs = get_type_hints(cls), field_docs(cls)
    keys = []
    for item in dataclasses.fields(cls):
        value = getattr(instance, item.name)
        if dataclasses.is_dataclass(value):
            keys.extend(config_keys(value, f"{prefix}{item.name}."))
        else:
            kind = getattr(hints[item.name], "__name__", str(hints[item.name]))
            keys.append((f"{prefix}{item.name}", kind, value, docs.get(item.name, "")))
    return keys


def _plain(text: str) -> str:
    """Docstring markup for a terminal: ````x```` -> ``x``, one line."""
    return " ".join(text.replace("``", "").split())


def config_help(cls: type, presets: list[str] | None = None, width: int = 92) -> str:
    """The keys of config ``cls`` (and the model ``presets``) as terminal help text."""
    out = []
    if presets:
        out.append(f"presets (preset=NAME): {', '.join(presets)}")
        out.append("")
    out.append("config keys (key=value anywhere on the command line, or in --config FILE):")
    for key, kind, default, doc in config_keys(cls):
        out.append(f"  {key} ({kind}, default {default!r})")
        if doc:
            out.extend(
                textwrap.wrap(_plain(doc), width, initial_indent=" " * 6, subsequent_indent=" " * 6)
            )
    return "\n".join(out)
