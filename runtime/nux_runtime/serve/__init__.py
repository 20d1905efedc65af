"""The production runtime: a workbook served as a Ray Serve application.

``nux_runtime.serve.app:build_app`` is the application builder a Serve config names; the
ingress (``ingress.py``) walks the DAG over one deployment per stage (``stage.py``) through the
resilient pipeline (``pipeline.py``), with validation, auth and rate limits, answer caches,
metrics, tracing and redacted logs in modules of their own. Importing this package does not import
Ray; ``app`` and ``ingress`` do.
"""

from nux_runtime.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
