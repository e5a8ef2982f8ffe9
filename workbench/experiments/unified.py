"""The computations behind notebook 02: Ancona et al., "Towards better understanding of
gradient-based attribution methods for deep neural networks", ICLR 2018, arXiv 1711.06104. The
six methods side by side and how alike their maps are (section 3), their Sensitivity-n curves
(section 4), and how epsilon-LRP's epsilon and Integrated Gradients' steps change the sum of the
attributions; per seed (``run_seed``) and as claims over seeds (``claims``)."""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import workbench as wb
from workbench import data as datasets
from workbench import metrics, models
from workbench.claims import Claim
from workbench.forward import target_indices

#: the paper's six methods (label -> method and options)
SIX_METHODS: dict[str, tuple[str, dict]] = {
    "Saliency": ("gradient", {}),
    "Gradient * Input": ("gradient_x_input", {}),
    "Integrated Gradients": ("integrated_gradients", {"steps": 50}),
    "epsilon-LRP": ("lrp_epsilon", {"epsilon": 1e-6}),
    "DeepLIFT (Rescale)": ("deeplift_rescale", {}),
    "Occlusion-1": ("occlusion", {}),
}


def networks(relu_model: str = "digits_cnn_relu", tanh_model: str = "digits_cnn_tanh",
             mnist_root: str = "", epochs: int = 10, progress: bool = True, seed: int = 0,
             ) -> tuple[dict[str, tuple[nn.Module, dict[str, Any]]], datasets.ImageData]:
    """The ReLU and the Tanh net (``{"ReLU": (model, info), "Tanh": ...}``) trained from
    ``seed`` and their data: the zoo models ``relu_model`` and ``tanh_model`` on their data, or,
    when ``mnist_root`` names a folder with MNIST's idx files, the same CNN with each activation
    trained (and cached) on MNIST for ``epochs`` epochs."""
    if mnist_root:
        nets = {label: models.trained("cnn", "mnist", seed=seed, root=mnist_root,
                                      activation=activation, epochs=epochs, progress=progress)
                for label, activation in (("ReLU", "relu"), ("Tanh", "tanh"))}
        return nets, models.DATASETS["mnist"](mnist_root)
    nets = {"ReLU": models.zoo(relu_model, seed=seed, progress=progress),
            "Tanh": models.zoo(tanh_model, seed=seed, progress=progress)}
    return nets, models.zoo_data(relu_model)


def without_biases(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose linear and convolutional layers have no bias (``bias=None``)."""
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            module.register_parameter("bias", None)
    return copied


def bias_free_twin(info: Mapping[str, Any], data: datasets.ImageData, seed: int,
                   epochs: int | None = None, progress: bool = False) -> tuple[nn.Module, float]:
    """The architecture of a zoo or ``models.trained`` net (its ``info``) without biases,
    initialised from ``seed`` and trained on ``data`` with the same training settings (``epochs``
    overrides theirs); returns the model and its test accuracy. Ancona et al. 2018 (section 3)
    state the equivalence of epsilon-LRP, DeepLIFT (Rescale) and Gradient * Input for ReLU nets
    with zero biases."""
    build = models.ARCHITECTURES[info["settings"]["architecture"]]
    model = without_biases(build(**info["arguments"], seed=seed))
    training = dict(info["settings"]["training"])
    if epochs is not None:
        training["epochs"] = epochs
    accuracy = models.train(model, data, seed=seed, progress=progress, **training)
    return model, accuracy


def attributions(model: nn.Module, inputs: torch.Tensor, target,
                 methods: Mapping[str, tuple[str, dict]] = SIX_METHODS) -> dict[str, torch.Tensor]:
    """Every method's attribution of the same inputs and targets."""
    return {label: wb.attribute(model, inputs, name, target=target, **options)
            for label, (name, options) in methods.items()}


def map_correlations(maps: Mapping[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    """Pearson correlation between every pair of methods' maps, per sample, averaged."""
    labels = list(maps)
    flat = torch.stack([maps[k].flatten(1).double() for k in labels])      # (M, N, D)
    centred = flat - flat.mean(dim=2, keepdim=True)
    normed = centred / centred.norm(dim=2, keepdim=True).clamp(min=1e-300)
    matrix = torch.einsum("and,bnd->abn", normed, normed).mean(dim=2)
    return labels, matrix


def pair_correlations(labels: Sequence[str], matrix: torch.Tensor,
                      pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """``"A vs B": matrix[A, B]`` for each pair of method labels (rows and columns of ``matrix``
    in the order of ``labels``, as ``map_correlations`` returns them)."""
    labels = list(labels)
    unknown = sorted({name for pair in pairs for name in pair} - set(labels))
    if unknown:
        raise ValueError(f"pairs name unknown methods {unknown}; known: {labels}")
    return {f"{a} vs {b}": float(matrix[labels.index(a), labels.index(b)]) for a, b in pairs}


def log_spaced_sizes(n_features: int, points: int = 12, fraction: float = 0.8) -> list[int]:
    """Subset sizes from 1 to ``fraction`` of the features, log-spaced, distinct."""
    top = max(1, int(fraction * n_features))
    sizes = {max(1, round(math.exp(math.log(top) * i / (points - 1)))) for i in range(points)}
    return sorted(sizes)


def sensitivity_curves(model: nn.Module, inputs: torch.Tensor, target,
                       maps: Mapping[str, torch.Tensor], sizes: Sequence[int],
                       n_subsets: int = 100, seed: int = 0,
                       batch_size: int = 2048) -> dict[str, list[float]]:
    """Mean Sensitivity-n over the inputs for each method and subset size, every method on the
    same random subsets (``metrics.sensitivity_n_curves``; removed features set to 0)."""
    curves = metrics.sensitivity_n_curves(model, inputs, maps, list(sizes), target=target,
                                          n_subsets=n_subsets, seed=seed,
                                          batch_size=batch_size)
    return {label: curve.mean().tolist() for label, curve in curves.items()}


def target_outputs(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """``f_t(x)`` per sample: the output of each sample's target class."""
    indices = target_indices(model, inputs, target)
    with torch.no_grad():
        return model(inputs).gather(1, indices[:, None])[:, 0]


def epsilon_effect(model: nn.Module, inputs: torch.Tensor, target,
                   epsilons: Sequence[float]) -> dict[float, float]:
    r"""For each ``epsilon``, epsilon-LRP's share of the output it explains, averaged over the
    inputs: :math:`\frac{1}{N} \sum_n \sum_i R_i(x_n) / f_t(x_n)`. On a ReLU net without
    biases the share is 1 as epsilon goes to 0 (conservation); a larger epsilon absorbs
    relevance in every layer's stabiliser, so the share shrinks (for one linear layer without
    bias it is :math:`|z| / (|z| + \epsilon)`, ``z`` the output)."""
    indices = target_indices(model, inputs, target)
    output = target_outputs(model, inputs, indices)
    effect = {}
    for epsilon in epsilons:
        relevance = wb.attribute(model, inputs, "lrp_epsilon", target=indices,
                                 epsilon=float(epsilon))
        effect[float(epsilon)] = float((relevance.flatten(1).sum(1) / output).mean())
    return effect


def completeness_error(model: nn.Module, inputs: torch.Tensor, target, steps: Sequence[int],
                       quadrature: str = "riemann_right") -> dict[int, float]:
    r"""For each number of ``steps``, how far Integrated Gradients (zero baseline) is from
    completeness, averaged over the inputs:
    :math:`\frac{1}{N} \sum_n |\sum_i IG_i(x_n) - (f_t(x_n) - f_t(0))|` (Sundararajan et al.
    2017, arXiv 1703.01365, section 3). The exact path integral gives 0; a Riemann sum's error
    shrinks like ``1 / steps`` on a smooth model and is 0 at any ``steps`` on a linear one."""
    indices = target_indices(model, inputs, target)
    delta = (target_outputs(model, inputs, indices)
             - target_outputs(model, torch.zeros_like(inputs), indices))
    error = {}
    for count in steps:
        integrated = wb.attribute(model, inputs, "integrated_gradients", target=indices,
                                  steps=int(count), quadrature=quadrature)
        error[int(count)] = float((integrated.flatten(1).sum(1) - delta).abs().mean())
    return error


# ----------------------------------------------------------------------------------------------
# Per seed, and the paper's claims over seeds

#: the methods whose equivalence section 3 states, compared with the first (epsilon -> 0)
EQUIVALENT_METHODS: dict[str, tuple[str, dict]] = {
    "Gradient * Input": ("gradient_x_input", {}),
    "epsilon-LRP": ("lrp_epsilon", {"epsilon": 1e-12}),
    "DeepLIFT (Rescale)": ("deeplift_rescale", {}),
}


def equivalence_gaps(model: nn.Module, inputs: torch.Tensor, target,
                     methods: Mapping[str, tuple[str, dict]] = EQUIVALENT_METHODS,
                     ) -> dict[str, float]:
    r"""How far each method after the first is from the first, relative to the first's scale:
    :math:`\max |R^m - R^1| / \max |R^1|` over all inputs and features, computed in float64 on a
    copy of ``model`` (zero baseline, the methods' default). 0 up to rounding (about 1e-15) where
    the methods are equivalent."""
    model = copy.deepcopy(model).double().eval()
    maps = attributions(model, inputs.double(), target, methods)
    reference_label, *others = list(maps)
    reference = maps[reference_label]
    scale = float(reference.abs().max())
    if scale == 0:
        raise ValueError(f"{reference_label} is zero on every input; choose other inputs")
    return {label: float((maps[label] - reference).abs().max()) / scale for label in others}


@dataclass(frozen=True)
class Protocol:
    """The sizes of one run: ``n_images`` test images explained (their labels are the targets);
    Sensitivity-n with ``n_subsets`` random subsets per image and n, at ``n_sizes`` log-spaced
    sizes from 1 to ``fraction`` of the features, removed features set to 0; the epsilons and
    Integrated Gradients' step counts looked at."""

    n_images: int = 16
    n_subsets: int = 100
    n_sizes: int = 12
    fraction: float = 0.8
    epsilons: tuple[float, ...] = (1e-6, 0.01, 0.1, 1.0)
    ig_steps: tuple[int, ...] = (2, 4, 8, 16, 32, 64)


@dataclass
class SeedResult:
    """What one seed gives: the nets' accuracies (``"ReLU"``, ``"Tanh"``, ``"ReLU, no biases"``),
    the equivalence gaps per net (``equivalence_gaps``), the Sensitivity-n curves per net and
    method at ``sizes``, epsilon-LRP's share of the output explained per epsilon and Integrated
    Gradients' completeness error per step count (per net), and the explained images and every
    method's maps of them per net (for figures)."""

    seed: int
    accuracy: dict[str, float]
    gaps: dict[str, dict[str, float]]
    sizes: list[int]
    sensitivity: dict[str, dict[str, list[float]]]
    epsilon_effect: dict[str, dict[float, float]]
    completeness: dict[str, dict[int, float]]
    maps: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    images: torch.Tensor | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """Everything but the maps, as plain values (for ``results.json``)."""
        return {"seed": self.seed, "accuracy": self.accuracy, "equivalence_gaps": self.gaps,
                "sensitivity_n": {"sizes": self.sizes, "curves": self.sensitivity},
                "epsilon_effect": self.epsilon_effect,
                "ig_steps_completeness_error": self.completeness}


def run_seed(seed: int, protocol: Protocol = Protocol(), relu_model: str = "digits_cnn_relu",
             tanh_model: str = "digits_cnn_tanh", mnist_root: str = "", epochs: int = 10,
             progress: bool = False, twin_epochs: int | None = None) -> SeedResult:
    """One seed of the study: the ReLU and Tanh nets trained from ``seed`` (``networks``) and a
    bias-free twin of the ReLU net (``bias_free_twin``, trained for ``twin_epochs``, by default
    as long as the ReLU net); the equivalence gaps on all three;
    the six methods' maps and Sensitivity-n curves on the ReLU and Tanh nets, subsets drawn
    from ``seed``; epsilon-LRP's conservation and Integrated Gradients' completeness error."""
    nets, data = networks(relu_model, tanh_model, mnist_root, epochs, progress, seed)
    images, labels = data.x_test[:protocol.n_images], data.y_test[:protocol.n_images]
    bias_free, bias_free_accuracy = bias_free_twin(nets["ReLU"][1], data, seed, twin_epochs)
    accuracy = {label: info["accuracy"] for label, (_, info) in nets.items()}
    accuracy["ReLU, no biases"] = bias_free_accuracy
    gaps = {"ReLU, no biases": equivalence_gaps(bias_free, images, labels)}
    gaps.update({label: equivalence_gaps(model, images, labels)
                 for label, (model, _) in nets.items()})
    sizes = log_spaced_sizes(images[0].numel(), protocol.n_sizes, protocol.fraction)
    maps, sensitivity, epsilon, completeness = {}, {}, {}, {}
    for label, (model, _) in nets.items():
        maps[label] = attributions(model, images, labels)
        sensitivity[label] = sensitivity_curves(model, images, labels, maps[label], sizes,
                                                n_subsets=protocol.n_subsets, seed=seed)
        epsilon[label] = epsilon_effect(model, images, labels, protocol.epsilons)
        completeness[label] = completeness_error(model, images, labels, protocol.ig_steps,
                                                 quadrature="riemann_right")
    return SeedResult(seed, accuracy, gaps, sizes, sensitivity, epsilon, completeness, maps,
                      images)


def gaps_table(results: Sequence[SeedResult]):
    """The equivalence gaps for display: one row per seed and net (with its test accuracy), one
    column per method compared with Gradient * Input, each gap written as ``1.2e-10`` (the
    gaps span ten orders of magnitude)."""
    import pandas as pd

    rows = [{"seed": r.seed, "net": net, "test accuracy": f"{r.accuracy[net]:.3f}",
             **{label: f"{gap:.1e}" for label, gap in gaps.items()}}
            for r in results for net, gaps in r.gaps.items()]
    return pd.DataFrame(rows)


def mean_over_seeds(per_seed: Sequence[Mapping]) -> dict:
    """The mean over seeds of equally keyed mappings of numbers or of lists of numbers (e.g.
    each seed's Sensitivity-n curves of one net, or its completeness errors)."""
    if not per_seed:
        raise ValueError("per_seed must hold at least one seed's values")
    return {key: torch.tensor([entry[key] for entry in per_seed], dtype=torch.float64)
            .mean(0).tolist() for key in per_seed[0]}


SOURCE_EQUIVALENCE = "Ancona et al. 2018, section 3 (Propositions 1-3)"
SOURCE_SENSITIVITY = "Ancona et al. 2018, section 4, Figure 4"
OCCLUSION = "Occlusion-1"
GLOBAL_METHODS = ("Integrated Gradients", "DeepLIFT (Rescale)")


def _seeds(results: Sequence[SeedResult]) -> list[int]:
    if not results:
        raise ValueError("results must hold at least one seed's SeedResult")
    return [r.seed for r in results]


def equivalence_claims(results: Sequence[SeedResult], tolerance: float = 1e-5,
                       parted: float = 1e-3) -> list[Claim]:
    """Section 3: on a ReLU net without biases, with a zero baseline, epsilon-LRP (epsilon ->
    0) and DeepLIFT (Rescale) equal Gradient * Input (relative gap below ``tolerance``); with
    Tanh they part (gap above ``parted``)."""
    seeds = _seeds(results)
    claims = [Claim(f"ReLU net without biases, zero baseline: {label} equals Gradient * Input",
                    f"max |{label} - Gradient * Input| / max |Gradient * Input|",
                    [r.gaps["ReLU, no biases"][label] for r in results], seeds,
                    threshold=tolerance, above=False, source=SOURCE_EQUIVALENCE,
                    note="float64; epsilon = 1e-12 for epsilon -> 0")
              for label in ("epsilon-LRP", "DeepLIFT (Rescale)")]
    claims.append(Claim(
        "Tanh net: epsilon-LRP and DeepLIFT (Rescale) part from Gradient * Input",
        "the smaller of the two relative gaps to Gradient * Input",
        [min(r.gaps["Tanh"].values()) for r in results], seeds, threshold=parted, above=True,
        source=SOURCE_EQUIVALENCE, note="zoo Tanh net (with biases), zero baseline"))
    return claims


def _at(result: SeedResult, net: str, method: str, position: int) -> float:
    return result.sensitivity[net][method][position]


def sensitivity_claims(results: Sequence[SeedResult], satisfied: float = 0.99) -> list[Claim]:
    """Section 4, as measured quantities over both nets (ReLU and Tanh):

    - at the smallest n (1), Occlusion-1 correlates best: its Sensitivity-n minus the best other
      method's, the smaller over the nets, is above 0;
    - at the largest n (``fraction`` of the features), Integrated Gradients and DeepLIFT
      correlate better than Occlusion-1: the smaller of theirs minus Occlusion-1's, the smaller
      over the nets, is above 0;
    - no method satisfies Sensitivity-n for every n on these nonlinear nets: the best method's
      lowest correlation over n, the larger over the nets, is below ``satisfied``.
    """
    seeds = _seeds(results)
    nets = list(results[0].sensitivity)

    def occlusion_lead(r: SeedResult) -> float:
        return min(_at(r, net, OCCLUSION, 0) - max(_at(r, net, m, 0) for m in r.sensitivity[net]
                                                   if m != OCCLUSION) for net in nets)

    def global_lead(r: SeedResult) -> float:
        return min(min(_at(r, net, m, -1) for m in GLOBAL_METHODS) - _at(r, net, OCCLUSION, -1)
                   for net in nets)

    def best_worst(r: SeedResult) -> float:
        return max(min(curve) for net in nets for curve in r.sensitivity[net].values())

    n_last = results[0].sizes[-1]
    return [
        Claim("Occlusion-1 has the highest Sensitivity-n at n = 1",
              "Occlusion-1's correlation at n = 1 minus the best other method's (worse net)",
              [occlusion_lead(r) for r in results], seeds, threshold=0.0, above=True,
              source=SOURCE_SENSITIVITY),
        Claim(f"Integrated Gradients and DeepLIFT beat Occlusion-1 at large n (n = {n_last})",
              "the lower of IG's and DeepLIFT's correlation minus Occlusion-1's (worse net)",
              [global_lead(r) for r in results], seeds, threshold=0.0, above=True,
              source=SOURCE_SENSITIVITY),
        Claim("No method satisfies Sensitivity-n for all n on a nonlinear net",
              "the best method's lowest mean correlation over n (higher net)",
              [best_worst(r) for r in results], seeds, threshold=satisfied, above=False,
              source=SOURCE_SENSITIVITY, note=f"satisfied would read 1; claimed < {satisfied}"),
    ]


def completeness_claim(results: Sequence[SeedResult]) -> Claim:
    """Integrated Gradients' completeness error falls with the steps: the error at the most
    steps over the error at the fewest, the larger over the nets, is below 1."""
    def ratio(r: SeedResult) -> float:
        return max(errors[max(errors)] / errors[min(errors)]
                   for errors in r.completeness.values())

    return Claim("Integrated Gradients' completeness error falls with the number of steps",
                 "error at the most steps / error at the fewest (worse net)",
                 [ratio(r) for r in results], _seeds(results), threshold=1.0, above=False,
                 source="Sundararajan et al. 2017 (arXiv 1703.01365), section 3; "
                        "Ancona et al. 2018, section 2",
                 note="right Riemann sum, zero baseline")


def claims(results: Sequence[SeedResult], tolerance: float = 1e-5) -> list[Claim]:
    """Every claim of the notebook: ``equivalence_claims``, ``sensitivity_claims``,
    ``completeness_claim``."""
    return [*equivalence_claims(results, tolerance), *sensitivity_claims(results),
            completeness_claim(results)]
