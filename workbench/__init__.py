"""Explainability Workbench: attribution methods from one engine, and the metrics to test them.

>>> import workbench as wb
>>> wb.methods()                                   # doctest: +SKIP
>>> wb.attribute(model, x, "lrp_epsilon", target=3) # doctest: +SKIP
"""
from workbench.attribution import attribute
from workbench.device import default_device
from workbench.registry import Method, Option, get_method as method_info, methods

__all__ = ["attribute", "methods", "method_info", "Method", "Option", "default_device"]
__version__ = "0.1.0"
