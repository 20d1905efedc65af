"""Evaluation: a workbook measured against its test bank and acceptance criteria (``nux eval``).
"""

from nux_kernel.evaluate.bank import Case, load_bank, resolve_bank
from nux_kernel.evaluate.criteria import Score, Scorer, Scoring, build_scorers
from nux_kernel.evaluate.run import CaseResult, EvalReport, evaluate_spec, evaluate_workbook
from nux_kernel.evaluate.summary import Verdict

__all__ = [
    "Case",
    "CaseResult",
    "EvalReport",
    "Score",
    "Scorer",
    "Scoring",
    "Verdict",
    "build_scorers",
    "evaluate_spec",
    "evaluate_workbook",
    "load_bank",
    "resolve_bank",
]
