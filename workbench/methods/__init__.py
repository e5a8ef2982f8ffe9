"""Attribution methods. Importing this package registers every method."""
from workbench.methods import (  # noqa: F401
    ablation, cam, gradients, pattern, perturbation, rollout, rule_based, shap, surrogate,
)
# last: its 'method' option offers every method registered before it
from workbench.methods import noise_tunnel  # noqa: F401, E402
