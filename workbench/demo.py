"""A small attribution demo: every method on a few digits, with the axioms checked.

Trains (or loads from the cache) the zoo's digits CNN, explains a few test digits with every
registered method, writes a heat-map figure and a ``results.json`` with the completeness checks.
Methods that learn from data (PatternNet, PatternAttribution) get patterns fitted on the demo's
training digits; a method that needs an option the demo cannot supply is listed with the reason.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import workbench as wb
from workbench import data, models, plots

#: fast but faithful settings per method (the defaults are for quality, these for a quick demo)
DEMO_OPTIONS = {
    "integrated_gradients": {"steps": 32},
    "smoothgrad": {"n_samples": 25, "seed": 0},
    "shapley_sampling": {"n_samples": 10, "seed": 0},
    "gradient_shap": {"n_samples": 25, "seed": 0},
    "kernel_shap": {"seed": 0},
    "lime": {"seed": 0},
    "feature_permutation": {"seed": 0},
    "noise_tunnel": {"n_samples": 25, "seed": 0},
}
#: the sampling methods left out of a smoke run
SLOW_METHODS = ("shapley_sampling", "smoothgrad")
#: training digits the patterns are fitted on (the whole training split outside smoke runs)
SMOKE_PATTERN_IMAGES = 256


def supplied_options(model: torch.nn.Module, training_images: torch.Tensor) -> dict[str, dict]:
    """Options the demo can supply beyond ``DEMO_OPTIONS``: patterns learned from the training
    digits (estimator ``a+-``, Kindermans et al. 2018, arXiv 1705.05598, section 4)."""
    patterns = wb.fit_patterns(model, training_images, estimator="a+-", progress=False)
    return {"pattern_net": {"patterns": patterns}, "pattern_attribution": {"patterns": patterns}}


def missing_options(name: str, options: dict) -> list[str]:
    """The required options of method ``name`` that ``options`` does not give."""
    return [option.name for option in wb.method_info(name).options
            if option.required and option.name not in options]


def run(output_dir: str | Path = "output/demo", n_images: int = 4, smoke: bool = False) -> dict:
    """Run the demo; returns the results written to ``output_dir/results.json``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, info = models.zoo("digits_cnn_relu")
    digits = data.digits()
    device = next(model.parameters()).device
    x = digits.x_test[:n_images].to(device)
    target = digits.y_test[:n_images].to(device)
    training_images = digits.x_train[:SMOKE_PATTERN_IMAGES] if smoke else digits.x_train
    supplied = supplied_options(model, training_images.to(device))
    names = [n for n in wb.methods(model) if not (smoke and n in SLOW_METHODS)]
    options = {name: {**DEMO_OPTIONS.get(name, {}), **supplied.get(name, {})} for name in names}
    skipped = {}
    for name in names:
        missing = missing_options(name, options[name])
        if missing:
            skipped[name] = f"needs option(s) {', '.join(missing)}, which the demo cannot supply"
    attributions, seconds = {}, {}
    for name in tqdm([n for n in names if n not in skipped], desc="methods"):
        start = time.perf_counter()
        attributions[name] = wb.attribute(model, x, name, target=target, **options[name])
        seconds[name] = time.perf_counter() - start
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x)))[torch.arange(len(x)), target]
    completeness = {
        name: float((attributions[name].flatten(1).sum(1) - delta).abs().max())
        for name in ("integrated_gradients", "deeplift_rescale", "shapley_sampling",
                     "kernel_shap")
        if name in attributions
    }
    notes = [f"patterns (a+-) fitted on {len(training_images)} training digits"]
    notes += [f"{name} left out: {reason}" for name, reason in skipped.items()]
    figure = plots.heatmap_grid(x.cpu(), attributions,
                                row_titles=[f"digit {int(t)}" for t in target],
                                title="Every method on the digits CNN (red: for the class)<br>"
                                      f"<sup>{'; '.join(notes)}</sup>")
    figure.write_html(output_dir / "heatmaps.html", include_plotlyjs=True)  # works offline
    results = {
        "model": "digits_cnn_relu", "test_accuracy": info["accuracy"],
        "methods": list(attributions), "skipped": skipped, "seconds": seconds,
        "pattern_training_images": len(training_images),
        "completeness_error (max |sum attr - (f(x) - f(0))|)": completeness,
        "completeness_note": "the digits CNN max-pools: DeepLIFT takes the gradient there (as "
                             "Shrikumar et al. 2017 do), which does not preserve the sum; "
                             "integrated gradients' error is its quadrature's",
        "figure": "heatmaps.html",
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
