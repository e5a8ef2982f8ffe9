"""A small attribution demo: every method on a few digits, with the axioms checked.

The main job until the paper notebooks exist: trains (or loads from the cache) the zoo's digits
CNN, explains a few test digits with every registered method, writes a heat-map figure and a
``results.json`` with the completeness checks.
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
}


def run(output_dir: str | Path = "output/demo", n_images: int = 4, smoke: bool = False) -> dict:
    """Run the demo; returns the results written to ``output_dir/results.json``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, info = models.zoo("digits_cnn_relu")
    digits = data.digits()
    device = next(model.parameters()).device
    x = digits.x_test[:n_images].to(device)
    target = digits.y_test[:n_images].to(device)
    names = wb.methods()
    if smoke:
        names = [n for n in names if n not in ("shapley_sampling", "smoothgrad")]
    attributions, seconds = {}, {}
    for name in tqdm(names, desc="methods"):
        start = time.perf_counter()
        attributions[name] = wb.attribute(model, x, name, target=target,
                                          **DEMO_OPTIONS.get(name, {}))
        seconds[name] = time.perf_counter() - start
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x)))[torch.arange(len(x)), target]
    completeness = {
        name: float((attributions[name].flatten(1).sum(1) - delta).abs().max())
        for name in ("integrated_gradients", "deeplift_rescale", "shapley_sampling")
        if name in attributions
    }
    figure = plots.heatmap_grid(x.cpu(), attributions,
                                row_titles=[f"digit {int(t)}" for t in target],
                                title="Every method on the digits CNN (red: for the class)")
    figure.write_html(output_dir / "heatmaps.html", include_plotlyjs="cdn")
    results = {
        "model": "digits_cnn_relu", "test_accuracy": info["accuracy"],
        "methods": names, "seconds": seconds,
        "completeness_error (max |sum attr - (f(x) - f(0))|)": completeness,
        "figure": "heatmaps.html",
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
