"""The ``nux`` command line. Each module adds the commands of one topic to :data:`main`."""

from nux_kernel.cli import evaluate as _evaluate  # noqa: F401  (registers commands)
from nux_kernel.cli import new as _new  # noqa: F401  (registers commands)
from nux_kernel.cli import serve as _serve  # noqa: F401  (registers commands)
from nux_kernel.cli import tune as _tune  # noqa: F401  (registers commands)
from nux_kernel.cli import workbook as _workbook  # noqa: F401  (registers commands)
from nux_kernel.cli.main import main

__all__ = ["main"]
