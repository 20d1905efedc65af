"""nux_widgets: the JupyterLab extension's Python side and the notebook views."""

__all__: list[str] = []
