"""The reader's controls of each paper app: the choices a reader of that paper would vary, each
recomputing a small version of the notebook's figures in the background
(:class:`widgets.recompute_panel.RecomputePanel`).

Every computation is a composition of the ``workbench.experiments`` functions the notebook
itself uses, at sizes that answer in seconds (a few images, smoke-sized fits); nothing runs
until a control changes. Zoo models are trained once and cached (``workbench.models.zoo``).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
from torch import nn

import workbench as wb
from widgets.recompute_panel import Progress, RecomputePanel
from workbench import basis as bases
from workbench import models, plots, randomization
from workbench.decompositions import SampleOptions, SparseOptions
from workbench.experiments import basis as basis_experiment
from workbench.experiments import patternnet, sanity, unified
from workbench.patterns import fit_estimators, signal_quality_of_estimators

_STYLE = {"description_width": "initial"}
#: zoo models offered by default: the digits nets (fast); the notebooks add their own model
DIGITS_MODELS = ("digits_cnn_relu", "digits_cnn_tanh")
#: the sizes of the PatternNet panel's recomputation: seconds on the digits nets
SMALL_STUDY = patternnet.StudySettings(n_fit=200, n_quality=120, max_neurons=16,
                                       n_degradation=3, patch=2, steps=8)
#: top-activating test images per direction in the basis panel's gallery
GALLERY_IMAGES = 3
#: iterations of ICA and NMF and steps of the sparse autoencoder in the basis panel
FIT_STEPS = 50


@functools.lru_cache(maxsize=4)
def _zoo(name: str, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo model ``name`` of ``seed`` in eval mode (trained once and cached on disk; the
    last few kept loaded here)."""
    model, info = models.zoo(name, seed=seed, progress=False)
    return model.eval(), info


def _dropdown(options: Sequence, value: Any, description: str) -> widgets.Dropdown:
    if value not in options:
        raise ValueError(f"{description} must be one of {list(options)}, got {value!r}")
    return widgets.Dropdown(options=list(options), value=value, description=description,
                            style=_STYLE)


def _choices(models_offered: Sequence[str], model: str) -> list[str]:
    return list(dict.fromkeys([model, *models_offered]))


# ----------------------------------------------------------------------------------------------
# 01: PatternNet and PatternAttribution (Kindermans et al. 2018, arXiv 1705.05598)


def _layer_follows_model(panel: RecomputePanel, layers_of) -> None:
    """Offer the layers of the chosen model (``layers_of(model name)``) in the panel's layer
    control, keeping the chosen layer where the new model has it."""
    layer = panel.controls["layer"]

    def follow(name: str) -> None:
        names = layers_of(name)
        kept = layer.value if layer.value in names else names[-1]
        layer.options = names
        layer.value = kept

    panel.follow("model", follow)


def patternnet_controls(model: str = "digits_cnn_relu",
                        models_offered: Sequence[str] = DIGITS_MODELS, estimator: str = "a+-",
                        method: str = "pattern_attribution",
                        sizes: patternnet.StudySettings = SMALL_STUDY,
                        seed: int = 0) -> RecomputePanel:
    """Model, signal estimator, layer and method of Kindermans et al. (2018): the estimator's
    signal quality ``rho`` per neuron of the layer against ``S_w`` (section 4), the method's
    heat maps with the estimator's patterns (section 5), and its image degradation curve
    against a random order (section 6). ``sizes``: patterns fitted on ``n_fit`` training
    images, ``rho`` of ``max_neurons`` neurons on ``n_quality`` test images, heat maps and
    degradation (``steps`` patches of ``patch`` pixels) of ``n_degradation`` test images."""
    n_fit, n_quality, max_neurons = sizes.n_fit, sizes.n_quality, sizes.max_neurons
    n_images, patch, steps = sizes.n_degradation, sizes.patch, sizes.steps

    def layers_of(name: str) -> list[str]:
        return list(patternnet.layer_kinds(_zoo(name, seed)[0]))

    model_control = _dropdown(_choices(models_offered, model), model, "model")
    estimator_control = _dropdown([e for e in patternnet.ESTIMATOR_LABELS if e != "x"],
                                  estimator, "estimator")
    layer_names = layers_of(model)
    layer_control = _dropdown(layer_names, layer_names[-1], "layer")
    method_control = _dropdown(patternnet.HEATMAP_METHODS, method, "method")

    def compute(values: dict[str, Any], progress: Progress) -> list[go.Figure]:
        progress.plan(5)
        net, _ = _zoo(values["model"], seed)
        data = models.zoo_data(values["model"])
        progress.advance("patterns")
        chosen = values["estimator"]
        fitted = fit_estimators(net, data.x_train[:n_fit], tuple(dict.fromkeys(("w", chosen))),
                                seed=seed, progress=False)
        progress.advance("rho")
        labels = patternnet.ESTIMATOR_LABELS
        quality = signal_quality_of_estimators(
            net, data.x_test[:n_quality], {labels[e]: p for e, p in fitted.items()},
            max_neurons=max_neurons, seed=seed, progress=False, per_neuron=True)
        layer = values["layer"]
        rho = plots.curves(range(max_neurons), {label: per_layer[layer].tolist()
                                                for label, per_layer in quality.items()},
                           f"Signal quality rho per neuron of {layer}", "neuron (sampled)",
                           "rho")
        progress.advance("heat maps")
        images, target = data.x_test[:n_images], data.y_test[:n_images]
        methods = patternnet.with_patterns([values["method"]], fitted[chosen])
        maps = patternnet.attributions(net, images, target, methods)
        heatmaps = plots.heatmap_grid(images, maps,
                                      row_titles=[data.classes[int(t)] for t in target],
                                      title=f"{values['method']}, patterns {labels[chosen]}")
        progress.advance("degradation")
        study = patternnet.degradation_study(net, images, target, methods, patch=patch,
                                             steps=steps, seed=seed)
        degradation = plots.curves(range(steps + 1),
                                   {label: curve.tolist() for label, curve in study.curves.items()},
                                   "Target output as the most relevant patches go",
                                   "patches replaced", "mean target output")
        progress.advance()
        return [rho, heatmaps, degradation]

    panel = RecomputePanel({"model": model_control, "estimator": estimator_control,
                            "layer": layer_control, "method": method_control}, compute)
    _layer_follows_model(panel, layers_of)
    return panel


# ----------------------------------------------------------------------------------------------
# 02: the unified view of gradient-based attribution (Ancona et al. 2018, arXiv 1711.06104)


def unified_controls(model: str = "digits_cnn_relu", models_offered: Sequence[str] = (
                         "digits_cnn_relu", "digits_cnn_tanh", "digits_mlp_relu",
                         "digits_mlp_tanh"),
                     methods: Sequence[str] = ("Gradient * Input", "Integrated Gradients",
                                               "Occlusion-1"),
                     n_images: int = 4, n_subsets: int = 20, points: int = 6,
                     seed: int = 0) -> RecomputePanel:
    """Model, methods and the range of subset sizes n of Ancona et al. (2018): each method's
    maps and its Sensitivity-n curve (section 4) at ``points`` log-spaced sizes in the range,
    on ``n_images`` test images and ``n_subsets`` random subsets per size."""
    features = models.zoo_data(model).x_test[0].numel()
    top = int(0.8 * features)
    model_control = _dropdown(_choices(models_offered, model), model, "model")
    method_control = widgets.SelectMultiple(options=list(unified.SIX_METHODS),
                                            value=tuple(methods), description="methods",
                                            rows=len(unified.SIX_METHODS), style=_STYLE)
    range_control = widgets.IntRangeSlider(value=(1, top), min=1, max=features,
                                           description="n range", style=_STYLE)

    def compute(values: dict[str, Any], progress: Progress) -> list[go.Figure]:
        chosen = list(values["methods"])
        if not chosen:
            raise ValueError("methods: choose at least one method")
        progress.plan(len(chosen) + 2)
        net, _ = _zoo(values["model"], seed)
        data = models.zoo_data(values["model"])
        images, target = data.x_test[:n_images], data.y_test[:n_images]
        low, high = values["n_range"]
        sizes = sorted({low, high, *(n for n in unified.log_spaced_sizes(high, points, 1.0)
                                     if n >= low)})
        progress.advance("maps")
        maps = {}
        for label in progress.steps(chosen, "maps"):
            maps.update(unified.attributions(net, images, target,
                                             {label: unified.SIX_METHODS[label]}))
        progress.check()
        curves = unified.sensitivity_curves(net, images, target, maps, sizes,
                                            n_subsets=n_subsets, seed=seed)
        figure = plots.curves(sizes, curves, f"Sensitivity-n, {values['model']}",
                              "n (features removed)", "Pearson correlation")
        figure.update_xaxes(type="log")
        progress.advance()
        return [figure, plots.heatmap_grid(images[:2], {k: v[:2] for k, v in maps.items()})]

    return RecomputePanel({"model": model_control, "methods": method_control,
                           "n_range": range_control}, compute)


# ----------------------------------------------------------------------------------------------
# 03: sanity checks for saliency maps (Adebayo et al. 2018, arXiv 1810.03292)


def sanity_controls(model: str = "digits_cnn_relu", models_offered: Sequence[str] = (
                        "digits_cnn_relu", "digits_cnn_tanh", "shapes_cnn"),
                    method: str = "Guided Backprop", mode: str = "cascading",
                    metric: str = "spearman_abs", n_images: int = 4, ig_steps: int = 8,
                    seed: int = 0) -> RecomputePanel:
    """Model, method, randomization mode and similarity metric of Adebayo et al. (2018): the
    similarity of the method's maps to the original model's as the layers are re-initialised
    (sections 3-4), and the maps of one input at each stage, on ``n_images`` test images."""
    paper = sanity.paper_methods(ig_steps)
    model_control = _dropdown(_choices(models_offered, model), model, "model")
    method_control = _dropdown(list(paper), method, "method")
    mode_control = _dropdown(randomization.MODES, mode, "randomization")
    metric_control = _dropdown(list(sanity.METRIC_TITLES), metric, "metric")

    def compute(values: dict[str, Any], progress: Progress) -> list[go.Figure]:
        progress.plan(3)
        net, _ = _zoo(values["model"], seed)
        data = models.zoo_data(values["model"])
        images, target = data.x_test[:n_images], data.y_test[:n_images]
        methods = {values["method"]: paper[values["method"]]}
        progress.advance("randomization")
        table = wb.sanity_check(net, images, methods, mode=values["mode"],
                                metrics=[values["metric"]], target=target, seed=seed,
                                edge_baseline=False, progress=False)
        similarity = sanity.similarity_figure(
            randomization.summarize(table),
            title=f"{values['mode']} randomization, {values['model']}: similarity to the "
                  "original explanation")
        progress.advance("maps")
        examples = sanity.randomization_figures(net, images[:1], methods, values["mode"],
                                                target[:1], f"{values['mode']} randomization",
                                                seed=seed)
        progress.advance()
        return [similarity, *examples]

    return RecomputePanel({"model": model_control, "method": method_control,
                           "mode": mode_control, "metric": metric_control}, compute)


# ----------------------------------------------------------------------------------------------
# 04: neurons vs principal components (Dey et al., arXiv 2011.03043)


def basis_controls(model: str = "digits_cnn_relu", models_offered: Sequence[str] = DIGITS_MODELS,
                   layer: str = "", basis: str = "pca", k: int = 2, n_fit: int = 300,
                   n_test: int = 100, steps: int = 30, seed: int = 0) -> RecomputePanel:
    """Model, layer, basis and k of Dey et al.: the layer restricted to the basis's top-k
    directions (variance explained, test accuracy, zero codes: ``compare_kinds``), and for each
    of the k directions its feature visualisation and top-activating test images. The bases are
    fitted on ``n_fit`` training images (ICA, NMF and the sparse autoencoder with
    ``FIT_STEPS`` iterations); ``steps``: feature-visualisation steps."""

    def layers_of(name: str) -> list[str]:
        return basis_experiment.default_layers(_zoo(name, seed)[0])

    layer_names = layers_of(model)
    model_control = _dropdown(_choices(models_offered, model), model, "model")
    layer_control = _dropdown(layer_names, layer or layer_names[-1], "layer")
    basis_control = _dropdown(bases.KINDS, basis, "basis")
    k_control = widgets.IntSlider(value=k, min=1, max=8, description="k", style=_STYLE)
    fit_options = {"ica": SampleOptions(max_samples=2000, max_iter=FIT_STEPS, seed=seed),
                   "nmf": SampleOptions(max_samples=2000, max_iter=FIT_STEPS, seed=seed),
                   "sparse": SparseOptions(max_samples=2000, steps=FIT_STEPS, seed=seed)}

    def compute(values: dict[str, Any], progress: Progress) -> list[go.Figure]:
        progress.plan(4)
        setting = basis_experiment.zoo_setting(values["model"], seed, n_fit, n_test,
                                               progress=False)
        progress.advance("basis")
        fitted = basis_experiment.fit_bases(setting.model, setting.fit_inputs, values["layer"],
                                            [values["basis"]], fit_options, progress=False)
        progress.advance("restriction")
        rows = basis_experiment.compare_kinds(setting.model, fitted, setting.test_inputs,
                                              setting.test_labels, values["k"], progress=False)
        table = plots.table(list(rows[0]), [[round(v, 3) if isinstance(v, float) else v
                                             for v in row.values()] for row in rows],
                            f"{values['layer']} restricted to its top-k {values['basis']} "
                            "directions")
        progress.advance("directions")
        value_range = (float(setting.fit_inputs.min()), float(setting.fit_inputs.max()))
        gallery = basis_experiment.direction_gallery(
            setting.model, setting.test_inputs, fitted[values["basis"]], values["k"],
            GALLERY_IMAGES, steps, value_range, seed, progress=False)
        progress.advance()
        return [table, basis_experiment.gallery_figure(
            [gallery], f"{values['layer']}: top {values['k']} {values['basis']} directions")]

    panel = RecomputePanel({"model": model_control, "layer": layer_control,
                            "basis": basis_control, "k": k_control}, compute)
    _layer_follows_model(panel, layers_of)
    return panel
