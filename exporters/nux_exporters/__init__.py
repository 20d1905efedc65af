"""nux_exporters: compile a frozen WorkbookSpec into what production deploys."""

__all__: list[str] = []
