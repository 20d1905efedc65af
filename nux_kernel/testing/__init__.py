"""Test suites NUX ships for component authors (run them against your own components).

:class:`ComponentContract` is the conformance suite every vetted component passes, in the
manner of optuna's shipped storage tests: subclass it in a ``Test*`` class, name the catalog
component and give a few requests. It lives in the ``nux`` authoring distribution, not in
``nux-runtime``, because it compiles a one-stage workbook against the catalog and runs it through
the playground executor; it needs pytest, which no production image installs.
"""

from __future__ import annotations

from nux_kernel.testing.contract import ComponentContract

__all__ = ["ComponentContract"]
