"""Explainability Workbench: attribution methods from one engine, and the metrics to test them.

>>> import workbench as wb
>>> wb.methods()                                   # doctest: +SKIP
>>> wb.attribute(model, x, "lrp_epsilon", target=3) # doctest: +SKIP

The names below are loaded on first use (PEP 562 module ``__getattr__``): ``import workbench``
alone does not import PyTorch, so a page that needs only ``workbench.study`` (the study's
participant page) starts quickly. The first public function or class used loads them all
(``workbench.api``).
"""
from __future__ import annotations

import importlib
import sys
import types

__all__ = ["attribute", "audit", "methods", "general_methods", "method_info", "Method", "Option",
           "Requirement", "default_device",
           "completeness_gap", "masks",
           "set_channels_last",
           "fit_patterns", "signal_quality", "Patterns", "toy", "metrics", "similarity",
           "quantus_explain",
           "activations", "fit_basis", "Basis", "variance_explained", "ablation_curve",
           "SampleOptions", "SparseOptions",
           "top_activating", "feature_visualisation", "direction_activation",
           "randomize", "sanity_check", "train_with_random_labels", "Composite", "lrp_rules"]
__version__ = "0.1.0"

#: submodules that were always reachable as attributes (``wb.basis``), imported on first use
_SUBMODULES = frozenset({"attribution", "basis", "completeness", "composites", "decompositions",
                         "device", "features", "layout", "masks", "metrics", "models",
                         "patterns", "quantus_adapter", "randomization", "registry",
                         "similarity", "toy"})


def __getattr__(name: str):
    """A submodule of ``_SUBMODULES`` (imported alone), or a public function or class (all of
    them loaded with ``workbench.api``). Other names raise ``AttributeError``: ``from
    workbench import study`` then imports just that submodule."""
    if name in _SUBMODULES:
        return importlib.import_module(f"workbench.{name}")
    if name not in __all__:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    from workbench import api

    globals().update({n: getattr(api, n) for n in __all__})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})


class _Package(types.ModuleType):
    """The package, where ``workbench.methods`` stays the function that lists the methods: the
    subpackage of the same name (the method declarations) would replace it when first imported,
    as the import system sets a subpackage as its parent's attribute. The subpackage stays in
    ``sys.modules``."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "methods" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
