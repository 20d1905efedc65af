"""Vetted component implementations, registered under the ``nux.components`` entry points."""

from nux_runtime.components.base import Component, RuntimeContext, StageResult, shared

__all__ = ["Component", "RuntimeContext", "StageResult", "shared"]
