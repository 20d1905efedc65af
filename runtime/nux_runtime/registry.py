"""Entry-point registries: how packages contribute components, criteria and exporters.

The groups are closed (:data:`GROUPS`); each maps a short name to an object loaded on first use.
NUX's own implementations register in ``runtime/setup.cfg`` exactly as a third-party package
would.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from nux_runtime.components.base import Component
from nux_runtime.errors import NuxError

__all__ = ["GROUPS", "available", "load", "load_component"]

GROUPS = ("nux.components", "nux.criteria", "nux.exporters")


@cache
def _group(group: str) -> dict[str, Any]:
    if group not in GROUPS:
        raise ValueError(f"unknown entry-point group {group!r}; groups: {', '.join(GROUPS)}")
    return {ep.name: ep for ep in entry_points(group=group)}


def available(group: str = "nux.components") -> list[str]:
    return sorted(_group(group))


@cache
def load(group: str, name: str) -> Any:
    eps = _group(group)
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise NuxError(
            f"no implementation {name!r} is registered in {group} (registered: {known}); "
            "install the package that provides it"
        )
    try:
        return eps[name].load()
    except ImportError as exc:
        raise NuxError(
            f"implementation {name!r} in {group} cannot be imported: {exc}; "
            f"install the package that provides {exc.name or 'it'}"
        ) from None


def load_component(name: str) -> type[Component]:
    cls = load("nux.components", name)
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise NuxError(f"{name!r} in nux.components is not a Component subclass")
    return cls
