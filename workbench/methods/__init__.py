"""Attribution methods. Importing this package registers every method."""
from workbench.methods import cam, gradients, perturbation, rule_based  # noqa: F401
