"""Each nux_widgets module names what it offers: a sorted ``__all__`` that holds every public
function and class the module defines, and nothing it does not define."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import nux_widgets

MODULES = sorted(m.name for m in pkgutil.iter_modules(nux_widgets.__path__,
                                                       prefix="nux_widgets."))


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete_and_sorted(name: str) -> None:
    module = importlib.import_module(name)
    declared = list(module.__all__)
    # ruff's order (RUF022): CONSTANTS, then Classes, then functions, each alphabetical
    assert declared == sorted(declared, key=lambda n: (
        0 if n.isupper() else 1 if n[:1].isupper() else 2, n))
    defined = {n for n, obj in vars(module).items()
               if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
               and obj.__module__ == name}
    assert set(declared) >= defined, sorted(defined - set(declared))
    assert all(hasattr(module, n) for n in declared)


def test_the_modules() -> None:
    assert MODULES == ["nux_widgets.dashboard", "nux_widgets.exports", "nux_widgets.jobs",
                       "nux_widgets.routes", "nux_widgets.runs", "nux_widgets.tuning",
                       "nux_widgets.views", "nux_widgets.wiring", "nux_widgets.workbooks",
                       "nux_widgets.workers"]
