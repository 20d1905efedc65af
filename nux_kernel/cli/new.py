"""``nux new --template NAME DIR``: start a workbook from one of the shipped templates.

Templates live in ``templates/<name>/`` of the NUX source tree: a workbook ``.ipynb`` with
markdown that explains it, its test bank, its prompts and whatever small data it needs. An
editable install reads them from the checkout; a wheel installs them under
``<prefix>/share/nux/templates`` (the root setup.cfg's ``data_files``). ``NUX_TEMPLATES`` points
at another folder of templates, for an organization that ships its own.
"""

from __future__ import annotations

import difflib
import os
import shutil
import sysconfig
from pathlib import Path

import click

from nux_kernel.cli.main import main, out, user_errors
from nux_runtime.errors import NuxError, Problem

__all__ = ["available_templates", "copy_template", "template_roots"]

_IGNORED = shutil.ignore_patterns(".nux", "__pycache__", ".ipynb_checkpoints", "*.pyc")


def template_roots() -> list[Path]:
    """Folders searched for templates, first match wins."""
    roots: list[Path] = []
    if os.environ.get("NUX_TEMPLATES"):
        roots.append(Path(os.environ["NUX_TEMPLATES"]).expanduser())
    roots.append(Path(__file__).resolve().parents[2] / "templates")
    roots.append(Path(sysconfig.get_path("data")) / "share" / "nux" / "templates")
    return roots


def available_templates() -> dict[str, Path]:
    """Template name -> its folder (a template is a folder holding an ``.ipynb``)."""
    found: dict[str, Path] = {}
    for root in template_roots():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and any(folder.glob("*.ipynb")):
                found.setdefault(folder.name, folder)
    return found


def copy_template(name: str, target: Path) -> list[Path]:
    """Copy template ``name`` into ``target`` (absent or empty); the files written."""
    templates = available_templates()
    if name not in templates:
        names = ", ".join(sorted(templates)) or "none installed"
        close = difflib.get_close_matches(name, list(templates), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise NuxError(problems=[Problem(
            code="template-unknown", message=f"there is no template {name!r}",
            fix=f"{hint}available templates: {names}", field="--template")])
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "a file" if not target.is_dir() else "a folder that is not empty"
        raise NuxError(problems=[Problem(
            code="target-exists", message=f"{target} is {what}",
            fix="name a new folder, or empty this one first", field="DIR")])
    if target.exists():
        target.rmdir()
    shutil.copytree(templates[name], target, ignore=_IGNORED)
    return sorted(p for p in target.rglob("*") if p.is_file())


@main.command()
@click.option("--template", "-t", "name", required=True, metavar="NAME",
              help="Template to start from (rag-qa, extract-json, classify-route, summarize, "
                   "sql-qa).")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@user_errors
def new(name: str, directory: Path) -> None:
    """Create a workbook in DIRECTORY from a template."""
    files = copy_template(name, directory)
    out.print(f"created {directory} from template {name!r} ({len(files)} files):", markup=False)
    for path in files:
        out.print(f"  {path.relative_to(directory)}", markup=False)
    for notebook in (p for p in files if p.suffix == ".ipynb"):
        out.print(f"next: nux validate {notebook}", markup=False)
