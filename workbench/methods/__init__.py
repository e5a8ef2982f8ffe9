"""Attribution methods. Importing this package registers every method."""
from workbench.methods import cam, gradients, pattern, perturbation, rule_based  # noqa: F401
