"""Test suites NUX ships for component authors (run them against your own components).

:class:`ComponentContract` is the conformance suite every vetted component passes, in the
manner of optuna's shipped storage tests: subclass it in a ``Test*`` class, name the catalog
component and give a few requests. The suite needs pytest and the ``nux`` authoring
distribution (it compiles a one-stage workbook against the catalog).
"""

from __future__ import annotations

from nux_runtime.testing.contract import ComponentContract

__all__ = ["ComponentContract"]
