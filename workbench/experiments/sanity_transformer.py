"""Notebook 03's transformer part: the cascading model-parameter randomization test of Adebayo et
al. 2018 (arXiv 1810.03292, section 3.1) on the zoo's vision transformer (``photos_vit``),
with the methods that apply to a transformer: the gradient (which the paper finds passes),
integrated gradients, AttnLRP and CP-LRP (Achtibat et al. 2024, arXiv 2402.05602; Ali et al.
2022, arXiv 2202.07304) and attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928).

The paper tests CNNs only; its criterion (a method passes when its maps change once the weights
they should depend on are re-initialised) is applied here unchanged, with the claim metric and
threshold of ``workbench.experiments.sanity``. Each seed trains its own transformer, draws its
own test images and its own re-initialisation.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

import workbench as wb
from workbench import models
from workbench.claims import Claim
from workbench.experiments.sanity import CLAIM_METRIC, CLAIM_THRESHOLD, stage_similarity
from workbench.experiments.transformers import drawn_test_indices
from workbench.randomization import summarize

ROLLOUT = "Attention rollout"


def transformer_methods(ig_steps: int = 32) -> dict[str, tuple[str, dict[str, Any]]]:
    """The methods checked on the transformer: label -> (method, options)."""
    return {"Gradient": ("gradient", {}),
            "Integrated Gradients": ("integrated_gradients", {"steps": ig_steps}),
            "AttnLRP": ("attn_lrp", {}), "CP-LRP": ("cp_lrp", {}),
            ROLLOUT: ("attention_rollout", {})}


def transformer_init(module: nn.Module) -> None:
    """Re-initialise ``module``'s own parameters in place as a freshly built transformer
    would: its ``reset_parameters`` (``nn.MultiheadAttention``: ``_reset_parameters``), and for
    parameters held without one (a class token, a position embedding) a normal draw of
    standard deviation 0.02 truncated at two, the initialisation of BERT and ViT."""
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters",
                                                                  None)
    if callable(reset):
        reset()
        return
    for parameter in module.parameters(recurse=False):
        nn.init.trunc_normal_(parameter, std=0.02, a=-0.04, b=0.04)


def vit_images(model_name: str, n_images: int, seed: int, progress: bool = True
               ) -> tuple[nn.Module, dict[str, Any], torch.Tensor, torch.Tensor]:
    """The zoo transformer ``model_name`` trained under ``seed`` (cached), ``n_images`` test
    images drawn under ``seed`` and their true labels."""
    model, info = models.zoo(model_name, seed=seed, device="cpu", progress=progress)
    data = models.zoo_data(model_name)
    chosen = drawn_test_indices(data, n_images, seed, "n_images")
    return model, info, data.x_test[chosen], data.y_test[chosen]


def cascading_summary(model_name: str, n_images: int, seed: int,
                      methods: Mapping[str, tuple[str, dict[str, Any]]],
                      metrics: tuple[str, ...] = (CLAIM_METRIC,), progress: bool = True):
    """``summarize`` of the cascading randomization of the seed's transformer (every layer
    with parameters, from the head down, ``transformer_init``) on its drawn images."""
    model, _, images, labels = vit_images(model_name, n_images, seed, progress)
    table = wb.sanity_check(model, images, methods, mode="cascading", metrics=metrics,
                            target=labels, seed=seed, init=transformer_init,
                            edge_baseline=False, progress=progress)
    return summarize(table)


def claims(per_seed: Mapping[int, Any], model_name: str = "photos_vit",
           threshold: float = CLAIM_THRESHOLD) -> list[Claim]:
    """One claim per method of the summaries (``cascading_summary`` per seed): it passes the
    cascading randomization test on the transformer, its maps' similarity to the original
    below ``threshold`` once every layer is re-initialised."""
    if not per_seed:
        raise ValueError("per_seed must hold at least one seed's summary")
    seeds = list(per_seed)
    first = next(iter(per_seed.values()))
    layers = int(first["stage_index"].max())
    note = (f"{int(first['count'].max())} test crops, {model_name} trained here; the paper tests "
            "CNNs only, its criterion is applied to the transformer unchanged")
    source = "Adebayo et al. 2018, section 3.1 (criterion); not in the paper"
    made = [Claim(f"{method} passes the cascading randomization test on the vision transformer",
                  f"Spearman (absolute values) to the original maps, all {layers} layers "
                  "re-initialised",
                  [stage_similarity(summary, method, -1) for summary in per_seed.values()],
                  seeds, threshold=threshold, above=False, source=source, note=note)
            for method in first["method"].unique()]
    if ROLLOUT in set(first["method"]):  # a property of its definition, measured
        made.append(Claim(
            f"{ROLLOUT} ignores the classifier: its maps stay the same when the top layer (the "
            "head) is re-initialised", "Spearman (absolute values) to the original maps, top "
            "layer re-initialised",
            [stage_similarity(summary, ROLLOUT, 1) for summary in per_seed.values()], seeds,
            threshold=threshold, above=True,
            source="Abnar & Zuidema 2020, section 3 (rollout uses the attention weights only)",
            note=note))
    return made
