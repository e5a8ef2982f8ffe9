"""ipywidgets components of the workbench (method picker, layer inspector, apps).

Widgets only compose: they call ``workbench`` and render with ipywidgets and plotly. The
components are imported on first use (PEP 562 module ``__getattr__``), so ``widgets.study_app``
alone (the study's participant page) does not import PyTorch.
"""
from __future__ import annotations

import importlib

#: each component and the module that defines it
_COMPONENTS = {"Explorer": "widgets.explorer", "LayerInspector": "widgets.layer_inspector",
               "MethodPicker": "widgets.method_picker", "RecomputePanel": "widgets.recompute_panel",
               "ToyGenerator": "widgets.toy_generator"}

__all__ = list(_COMPONENTS)


def __getattr__(name: str):
    """A component, imported on first use."""
    if name not in _COMPONENTS:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}")
    component = getattr(importlib.import_module(_COMPONENTS[name]), name)
    globals()[name] = component
    return component


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
