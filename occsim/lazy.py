"""Package attributes imported on first use (PEP 562), so that importing a package stays
cheap: ``import occsim`` must not pull in torch through ``occsim.envs`` or ``occsim.agents``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, sources: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` whose names
    ``sources`` maps to the submodule defining them; a name, once imported, is stored in
    ``namespace`` (the package's globals) so later look-ups skip the function."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sources[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *sources])

    return __getattr__, __dir__
