"""ipywidgets components of the workbench (method picker, layer inspector, apps).

Widgets only compose: they call ``workbench`` and render with ipywidgets and plotly.
"""
from widgets.explorer import Explorer
from widgets.layer_inspector import LayerInspector
from widgets.method_picker import MethodPicker
from widgets.recompute_panel import RecomputePanel
from widgets.toy_generator import ToyGenerator

__all__ = ["Explorer", "LayerInspector", "MethodPicker", "RecomputePanel", "ToyGenerator"]
