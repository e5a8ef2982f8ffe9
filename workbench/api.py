"""The workbench's public names (``workbench.__all__``), imported together; ``import
workbench`` loads this module on the first use of one of them."""
from workbench import masks, metrics, similarity, toy
from workbench.attribution import attribute
from workbench.auditing import audit
from workbench.completeness import completeness_gap
from workbench.composites import Composite, lrp_rules
from workbench.patterns import Patterns, fit_patterns, signal_quality
from workbench.quantus_adapter import quantus_explain
from workbench.models import train_with_random_labels
from workbench.randomization import randomize, sanity_check
from workbench.device import default_device
from workbench.layout import set_channels_last
from workbench.registry import (Method, Option, Requirement, general_methods,
                                get_method as method_info, methods)
from workbench.basis import (Basis, ablation_curve, activations, fit_basis,
                             variance_explained)
from workbench.decompositions import SampleOptions, SparseOptions
from workbench.features import direction_activation, feature_visualisation, top_activating

__all__ = ["attribute", "audit", "methods", "general_methods", "method_info", "Method", "Option",
           "Requirement", "default_device",
           "completeness_gap", "masks", "set_channels_last", "fit_patterns", "signal_quality",
           "Patterns", "toy", "metrics", "similarity", "quantus_explain", "activations",
           "fit_basis", "Basis", "variance_explained", "ablation_curve", "SampleOptions",
           "SparseOptions", "top_activating", "feature_visualisation", "direction_activation",
           "randomize", "sanity_check", "train_with_random_labels", "Composite", "lrp_rules"]
