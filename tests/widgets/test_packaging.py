"""The extension as installed: enabled in JupyterLab and in the Jupyter server, its settings
schema shipped, and its TypeScript units passing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

WIDGETS = Path(__file__).resolve().parents[2] / "widgets"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jupyter(*args: str) -> str:
    done = subprocess.run([str(BIN / "jupyter"), *args], capture_output=True, text=True,
                          env=ENV, timeout=120, check=True)
    return ANSI.sub("", done.stdout + done.stderr)


def test_labextension_is_installed_and_enabled() -> None:
    listing = _jupyter("labextension", "list")
    assert re.search(r"nux-widgets v0\.1\.0 enabled\s+OK", listing), \
        listing


def test_server_extension_is_enabled_on_install() -> None:
    listing = _jupyter("server", "extension", "list")
    assert re.search(r"nux_widgets enabled", listing), listing
    assert re.search(r"nux_widgets\s+OK", listing), listing


def test_settings_schema_ships_with_the_extension() -> None:
    from jupyter_core.paths import jupyter_path

    found = [Path(p) / "nux-widgets" for p in jupyter_path("labextensions")
             if (Path(p) / "nux-widgets").exists()]
    assert found, "nux-widgets is not in any labextensions folder"
    schema = json.loads((found[0] / "schemas" / "nux-widgets" / "plugin.json").read_text())
    assert {"catalogPath", "exportOutDir", "tuneTrials"} <= set(schema["properties"])
    package = json.loads((found[0] / "package.json").read_text())
    assert package["name"] == "nux-widgets"
    assert package["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")


def test_typescript_units() -> None:
    if not (WIDGETS / "node_modules" / ".bin" / "vitest").exists():
        subprocess.run([str(BIN / "jlpm"), "install", "--immutable"], cwd=WIDGETS, env=ENV,
                       check=True, capture_output=True, timeout=600)
    done = subprocess.run([str(BIN / "jlpm"), "test"], cwd=WIDGETS, env=ENV, capture_output=True,
                          text=True, timeout=300)
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, output
    match = re.search(r"Tests\s+(\d+) passed", output)
    assert match and int(match.group(1)) >= 18, output
