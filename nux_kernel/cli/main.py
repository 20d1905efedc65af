"""The ``nux`` command group, and what every command shares.

A user's mistake (a bad workbook, a bad input, a missing file) is printed as one clear line per
problem and exits with status 2; a stage that fails at run time exits with status 1 and names the
stage. No traceback is printed for either. Commands live in one module per topic in this package.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from nux_kernel.catalog import load_catalog
from nux_kernel.compiler import check_workbook
from nux_kernel.notebook import read_notebook
from nux_runtime.errors import NuxError, Problem, WorkbookError
from nux_runtime.spec import WorkbookSpec

__all__ = ["err", "load_spec", "main", "out", "sort_problems", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _report(problems: Sequence[Problem], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "problems": [p.to_dict() for p in problems]},
                              indent=2, ensure_ascii=False))
        return
    for problem in problems:
        err.print(problem.render(), markup=False)
    noun = "problem" if len(problems) == 1 else "problems"
    err.print(f"{len(problems)} {noun} found", markup=False)


def user_errors(fn: F) -> F:
    """Turn a NuxError into its problems on stderr and exit status 2."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NuxError as exc:
            _report(exc.problems, bool(kwargs.get("as_json")))
            sys.exit(2)
    return wrapper  # type: ignore[return-value]


def sort_problems(problems: list[Problem], order: dict[str, int]) -> list[Problem]:
    """Workbook-level problems first, then by cell order and line."""
    return sorted(problems, key=lambda p: (p.cell is not None, order.get(p.cell or "", 1 << 30),
                                           p.line or 0))


def load_spec(workbook: str, catalog: str | None) -> tuple[WorkbookSpec, Path]:
    source = read_notebook(workbook)
    spec, problems = check_workbook(source, load_catalog(catalog))
    if spec is None:
        order = {c.cell: c.index for c in source.cells}
        raise WorkbookError(problems=sort_problems(problems, order))
    return spec, source.base_dir


#: The commands other NUX distributions add, and the distribution each comes with.
PLUGIN_HOMES = {"export": "nux-exporters", "dashboard": "nux-widgets"}


def _not_installed(name: str, home: str, why: str) -> click.Command:
    """``nux NAME`` when the distribution that adds it is missing: one problem, status 2."""
    problem = Problem(code="not-installed", message=f"`nux {name}` comes with {home}, {why}",
                      fix=f"pip install {home}")

    def refuse() -> None:
        _report([problem], as_json=False)
        sys.exit(2)

    return click.Command(name, callback=refuse, help=f"{problem.message}: {problem.fix}.",
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})


class _Commands(click.Group):
    """The ``nux`` group: its own commands, plus those other installed distributions add under
    the ``nux.commands`` entry-point group (``nux export`` from nux-exporters, ``nux dashboard``
    from nux-widgets). A plugin is imported only when its command runs (or help lists it), so
    ``nux run`` pays nothing for it; a missing one says what to install."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group="nux.commands")
                if ep.name not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins(), *PLUGIN_HOMES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        home = PLUGIN_HOMES.get(cmd_name)
        if plugin is None:
            return None if home is None else _not_installed(cmd_name, home,
                                                            "which is not installed")
        try:
            loaded = plugin.load()
        except ImportError as exc:
            home = home or (plugin.dist.name if plugin.dist is not None else "its package")
            return _not_installed(cmd_name, home, f"which cannot be imported ({exc})")
        return loaded if isinstance(loaded, click.Command) else None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nux")
def main() -> None:
    """NUX: chain vetted model, data and code cells; measure, tune and ship them."""


