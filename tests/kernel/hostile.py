"""Hostile notebooks, and a watcher that proves reading them does nothing.

``CORPUS`` maps a case name to the notebook file's bytes and the problem code NUX must answer
with. :class:`Watcher` is a ``sys.addaudithook`` hook that records every file write, directory
change, socket, process and ``exec``-family call made while it is armed; ``python -m
tests.kernel.hostile <command> <notebook>...`` runs ``nux <command>`` on each notebook under it,
in one process, and prints one JSON line per notebook (exit code, output, violations).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

ESCAPE = ("[c for c in object.__subclasses__() if c.__name__ == 'catch_warnings'][0]()._module"
          ".__builtins__['__import__']('os').system('touch {marker}') and str")


def notebook(*cells: str, metadata: Any = None) -> dict[str, Any]:
    meta = {"name": "hostile", "inputs": {"question": {"type": "string"}}, "output": "shout"}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"nux": meta if metadata is None
                                                             else metadata},
            "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "outputs": [],
                       "execution_count": None, "source": src} for i, src in enumerate(cells)]}


def _json(nb: dict[str, Any]) -> bytes:
    return json.dumps(nb).encode()


def _code(body: str) -> bytes:
    return _json(notebook("%%nux code shout\n" + body))


def _bomb(prefix: str = "") -> str:
    lines = [f"{prefix}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{prefix}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "\n".join(lines)


def _deep_yaml() -> str:
    return "uses: llm.local/gemma-3-270m\ninputs: [question]\nparams: {x: " + "[" * 200 + \
        "]" * 200 + "}\n"


def _deep_metadata() -> dict[str, Any]:
    value: Any = {"type": "string"}
    for _ in range(200):
        value = {"type": "object", "properties": {"q": value}}
    return {"name": "deep", "inputs": value, "output": "shout"}


#: Cases in the test bank, which `nux validate` and `nux export` read and the others do not.
BANK_CASES = frozenset({"test-bank-device"})


def corpus(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Case name -> (notebook bytes, the problem code NUX answers with)."""
    escape = ESCAPE.format(marker=marker)
    rng = random.Random(12)
    return {
        "annotation-escape": (_code(f"def shout(question: {escape}) -> str:\n    return ''\n"),
                              "code-annotation"),
        "return-annotation-escape": (_code(f"def shout(question: str) -> {escape}:\n"
                                           "    return ''\n"), "code-annotation"),
        "quoted-annotation": (_code(f"def shout(question: \"__import__('os').system('touch "
                                    f"{marker}')\") -> str:\n    return ''\n"),
                              "code-annotation"),
        "dynamic-import": (_code(f"def shout(question: str) -> str:\n    __import__('os')"
                                 f".system('touch {marker}')\n    return ''\n"), "code-import"),
        "importlib": (_code("import importlib\ndef shout(question: str) -> str:\n"
                            "    return str(importlib.import_module('subprocess'))\n"),
                      "code-import"),
        "builtin-attributes": (_code("def shout(question: str) -> str:\n"
                                     "    return print.__self__.__import__('os').getcwd()\n"),
                               "code-sandbox"),
        "frame-walk": (_code("def shout(question: str) -> str:\n"
                             "    return str((x for x in ()).gi_frame.f_back.f_globals)\n"),
                       "code-sandbox"),
        "yaml-alias-bomb": (_json(notebook("%%nux model shout\nuses: llm.local/gemma-3-270m\n"
                                           "inputs: [question]\nparams:\n" + _bomb("  "))),
                            "yaml-limit"),
        "options-alias-bomb": (_code("\n".join("#| " + ln for ln in
                                               ("description: x", *_bomb().split("\n")))
                                     + "\ndef shout(question: str) -> str:\n    return ''\n"),
                               "yaml-limit"),
        "yaml-deep-nesting": (_json(notebook("%%nux model shout\n" + _deep_yaml())),
                              "yaml-limit"),
        "metadata-deep-nesting": (_json(notebook("%%nux code shout\ndef shout(question: str) "
                                                 "-> str:\n    return ''\n",
                                                 metadata=_deep_metadata())), "metadata-limit"),
        "json-deep-nesting": (b"[" * 200_000 + b"]" * 200_000, "notebook-json"),
        "json-huge-number": (b'{"cells": [], "metadata": {"n": ' + b"9" * 20_000 + b"}}",
                             "notebook-json"),
        "huge-cell": (_code("def shout(question: str) -> str:\n    return ''\n"
                            + "# filler\n" * 40_000), "cell-size"),
        "binary-notebook": (bytes(rng.randrange(256) for _ in range(4096)), "notebook-json"),
        "nul-in-code-cell": (_code("def shout(question: str) -> str:\n    return '\x00'\x00\n"),
                             "code-syntax"),
        "control-chars-in-yaml": (_json(notebook("%%nux model shout\nuses: \x07\x1b\x00\n")),
                                  "yaml"),
        "test-bank-device": (_json(notebook("%%nux code shout\ndef shout(question: str) -> "
                                            "str:\n    return ''\n", metadata={
                                                "name": "bank", "inputs": ["question"],
                                                "output": "shout", "test_bank": "/dev/zero"})),
                             "test-bank"),
        "deep-python": (_code("def shout(question: str) -> str:\n    return " + "-" * 100_000
                              + "1\n"), "code-syntax"),
    }


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ALWAYS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
           "subprocess.Popen", "socket.connect", "socket.bind", "socket.getaddrinfo",
           "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link",
           "os.truncate", "shutil.rmtree", "shutil.copyfile")


class Watcher:
    """An audit hook recording what user text must never cause: writes, sockets, processes.

    ``only`` narrows the record to events raised while a frame of those file path fragments
    is on the stack (a Jupyter server's own sockets are not NUX's doing).
    """

    def __init__(self, only: tuple[str, ...] = ()) -> None:
        self.armed = False
        self.only = only
        self.seen: list[str] = []
        self._lock = threading.Lock()
        sys.addaudithook(self._hook)

    def _ours(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if any(part in frame.f_code.co_filename for part in self.only):
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        bad = event.startswith(_ALWAYS)
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            bad = bool(writing) and path not in ("/dev/null",) and not isinstance(path, int)
        if bad and (not self.only or self._ours()):
            with self._lock:
                self.seen.append(f"{event}{args!r}"[:300])


def run_cli(command: str, paths: list[str], extra: list[str]) -> None:
    """``nux <command> <path> <extra>`` for each path, watched; one JSON line per path."""
    from click.testing import CliRunner

    from nux_kernel.cli import main

    watcher = Watcher()
    runner = CliRunner()
    # NUX's own modules and the libraries they import load before any user text is read (pulumi
    # imports dill, which probes the temp folder): import-time effects are not the notebook's.
    runner.invoke(main, [command, "--help"])
    for path in paths:
        watcher.seen.clear()
        watcher.armed = True
        result = runner.invoke(main, [command, path, *extra])
        watcher.armed = False
        exc = result.exception
        line = {"path": path, "exit": result.exit_code, "output": result.output[-3000:],
                "exception": None if exc is None or isinstance(exc, SystemExit) else repr(exc),
                "violations": list(watcher.seen)}
        os.write(1, (json.dumps(line) + "\n").encode())


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    split = rest.index("--") if "--" in rest else len(rest)
    run_cli(command, rest[:split], rest[split + 1:])
