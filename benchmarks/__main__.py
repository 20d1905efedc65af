"""Run the benchmarks: ``python -m benchmarks [topic ...]`` (all ``bench_*.py`` by default)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from benchmarks.report import Row, machine, render
from nux_runtime.serve.local import serve_environment


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    topics = sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)])
                    if m.name.startswith("bench_"))
    chosen = argv or topics
    unknown = [t for t in chosen if t not in topics]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(topics)}",
              file=sys.stderr)
        return 2
    # before any topic imports Ray Serve: the hand-written apps build their handles in this
    # process, in the mode NUX's app runs in
    serve_environment()
    rows: list[Row] = []
    failed: list[str] = []
    for topic in chosen:
        print(f"== {topic}", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.bench_{topic}")
            rows.extend(module.run())
        except Exception:  # the other topics still run and print; the exit status says so
            traceback.print_exc()
            failed.append(topic)
    print(f"Machine: {machine()}\n")
    print(render(rows))
    if failed:
        print(f"\nfailed: {', '.join(failed)} (tracebacks above, on stderr)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
