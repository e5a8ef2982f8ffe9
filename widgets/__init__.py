"""ipywidgets components of the workbench (method picker, layer inspector, apps).

Widgets only compose: they call ``workbench`` and render with ipywidgets and plotly.
"""
