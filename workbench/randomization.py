"""Sanity checks for explanations (Adebayo et al., "Sanity checks for saliency maps", NeurIPS
2018, arXiv 1810.03292): does an explanation change when the model's parameters or its
training labels are randomized?

- ``randomize``: copies of a model with layers re-initialised, cascading from the logits down or
  one layer at a time (the model parameter randomization tests);
- the data randomization test's model, trained on permuted labels until it memorises them, is
  ``workbench.models.train_with_random_labels`` (beside the training loop it uses);
- ``sanity_check``: explanations of every stage compared with the original ones (and with an
  edge detector) by the paper's similarity metrics, as a tidy table.

>>> for stage, randomized in wb.randomize(model, "cascading"):   # doctest: +SKIP
...     wb.attribute(randomized, x, "guided_backprop", target=t)
"""
from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench import similarity as similarities
from workbench.attribution import attribute
from workbench.checks import Target, check_inputs, check_same_device
from workbench.forward import target_indices
from workbench.model_layers import find_layer

MODES = ("cascading", "independent")
INITS = ("default", "truncated_normal")
METRICS = ("spearman_abs", "spearman", "ssim", "hog")
Layers = Sequence[str | nn.Module] | None
Init = str | Callable[[nn.Module], None]


# ----------------------------------------------------------------------------------------------
# Model parameter randomization


def parameterized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module of ``model`` with parameters of its own (``parameters(recurse=False)``), as
    ``(dotted name, module)`` in module registration order (``model.named_modules()``).

    Registration order is taken as forward order: it is for ``nn.Sequential`` models, the zoo's
    nets and torchvision's VGG and ResNets. For a model that defines its layers in another order
    than it runs them, pass ``layers`` in forward order to ``randomize``.
    """
    return [(name, module) for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None]


def _label(name: str) -> str:
    return name or "(model)"


def _resolve_layers(model: nn.Module, layers: Layers) -> list[tuple[str, nn.Module]]:
    candidates = parameterized_layers(model)
    if not candidates:
        raise ValueError(f"the model ({type(model).__name__}) has no parameters to randomize")
    if layers is None:
        return candidates
    if isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence):
        raise TypeError("layers must be a sequence of modules of the model or their dotted "
                        f"names, in forward order, or None; got {type(layers).__name__}")
    known = [_label(n) for n, _ in candidates]
    resolved: list[tuple[str, nn.Module]] = []
    for layer in layers:
        name, module = find_layer(model, layer, "layers", known, "layers with parameters")
        if next(module.parameters(recurse=False), None) is None:
            raise ValueError(f"layers: '{_label(name)}' ({type(module).__name__}) has no "
                             f"parameters of its own; layers with parameters: {', '.join(known)}")
        if any(name == seen for seen, _ in resolved):
            raise ValueError(f"layers: '{_label(name)}' is listed twice")
        resolved.append((name, module))
    if not resolved:
        raise ValueError("layers must name at least one layer")
    return resolved


def _layer_seed(seed: int, index: int) -> int:
    """An independent seed for layer ``index`` (its position in forward order) under ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _truncated_normal(module: nn.Module) -> None:
    """Every parameter of ``module`` itself from N(0, 0.01^2) truncated at two standard
    deviations (the paper's re-initialisation of Inception v3); buffers are kept."""
    for parameter in module.parameters(recurse=False):
        nn.init.trunc_normal_(parameter, mean=0.0, std=0.01, a=-0.02, b=0.02)


def _random_state(name: str, module: nn.Module, seed: int, init: Init) -> dict[str, torch.Tensor]:
    """New values for the parameters and buffers of ``module`` itself (not of its children),
    drawn on the CPU under the layer's seed so that they are the same on every device."""
    if init == "default" and not callable(getattr(module, "reset_parameters", None)):
        raise ValueError(
            f"layer '{_label(name)}' ({type(module).__name__}) has no reset_parameters() for "
            "init='default'; pass init='truncated_normal' or a function that re-initialises a "
            "module in place")
    fresh = copy.deepcopy(module).to("cpu")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        if init == "default":
            fresh.reset_parameters()
        elif init == "truncated_normal":
            _truncated_normal(fresh)
        else:
            init(fresh)
    own = [*fresh.named_parameters(recurse=False), *fresh.named_buffers(recurse=False)]
    return {key: value.detach().clone() for key, value in own}


def _with_layers_replaced(model: nn.Module, states: Mapping[str, dict[str, torch.Tensor]]
                          ) -> nn.Module:
    """A deep copy of ``model`` whose layers in ``states`` take the new values (copied into the
    existing tensors: dtype, device and ``requires_grad`` are kept)."""
    randomized = copy.deepcopy(model)
    with torch.no_grad():
        for name, state in states.items():
            module = randomized.get_submodule(name)
            own = dict([*module.named_parameters(recurse=False),
                        *module.named_buffers(recurse=False)])
            for key, value in state.items():
                own[key].copy_(value)
    return randomized


def randomize(model: nn.Module, mode: str = "cascading", *, layers: Layers = None,
              seed: int = 0, init: Init = "default") -> Iterator[tuple[str, nn.Module]]:
    """Copies of ``model`` with layers re-initialised: the model parameter randomization tests
    of Adebayo et al. 2018 (section 3.1).

    Parameters
    ----------
    model:
        Never modified; each stage is a deep copy (train/eval mode, dtype and device kept).
    mode:
        ``"cascading"``: stage ``k`` re-initialises the top ``k`` layers, from the logits down
        to the first layer (one more layer per stage, the last stage randomizes every layer);
        ``"independent"``: stage ``k`` re-initialises only the ``k``-th layer from the top.
    layers:
        Modules or dotted names in forward order; ``None`` takes every module with parameters
        of its own in registration order (see ``parameterized_layers``).
    seed:
        The new values of a layer depend only on ``seed`` and the layer's position in
        ``layers``: the same in every stage and both modes, and on every device.
    init:
        ``"default"``: the layer's own ``reset_parameters()`` (PyTorch's initialisation, the
        distribution an untrained net starts from; resets BatchNorm's running statistics too);
        ``"truncated_normal"``: N(0, 0.01^2) truncated at two standard deviations; or a function
        ``init(module)`` that re-initialises a module's own parameters in place (it runs under
        ``torch.manual_seed`` on a CPU copy).

    Yields
    ------
    ``(stage, randomized_model)``, top layer first; ``stage`` is the dotted name of the layer
    randomized last (for the cascade, "everything from the logits down to this layer").
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not (callable(init) or init in INITS):
        raise ValueError(f"init must be one of {list(INITS)} or a function init(module), got "
                         f"{init!r}")
    resolved = _resolve_layers(model, layers)
    return _stages(model, mode, resolved, int(seed), init)


def randomized_stage(model: nn.Module, mode: str, stage: int, *, layers: Layers = None,
                     seed: int = 0, init: Init = "default") -> tuple[str, nn.Module]:
    """Stage ``stage`` (1 is the top layer) of ``randomize(model, mode, layers=, seed=,
    init=)`` alone, equal to the one the generator yields, without building the stages
    before it: a copy of the model with the top ``stage`` layers re-initialised (cascading)
    or only the ``stage``-th from the top (independent)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    resolved = _resolve_layers(model, layers)
    if not isinstance(stage, numbers.Integral) or not 1 <= stage <= len(resolved):
        raise ValueError(f"stage must be an int from 1 to {len(resolved)} (the layers with "
                         f"parameters), got {stage!r}")
    first = len(resolved) - stage
    indices = range(first, len(resolved)) if mode == "cascading" else [first]
    states = {resolved[i][0]: _random_state(*resolved[i], _layer_seed(int(seed), i), init)
              for i in indices}
    return _label(resolved[first][0]), _with_layers_replaced(model, states)


def _stages(model, mode, resolved, seed, init) -> Iterator[tuple[str, nn.Module]]:
    states: dict[str, dict[str, torch.Tensor]] = {}
    for index in reversed(range(len(resolved))):
        name, module = resolved[index]
        state = _random_state(name, module, _layer_seed(seed, index), init)
        if mode == "cascading":
            states[name] = state
            yield _label(name), _with_layers_replaced(model, states)
        else:
            yield _label(name), _with_layers_replaced(model, {name: state})


# ----------------------------------------------------------------------------------------------
# The sanity check table

Methods = Sequence[str] | Mapping[str, tuple[str, dict[str, Any]]]


def _methods(methods: Methods) -> dict[str, tuple[str, dict[str, Any]]]:
    if isinstance(methods, Mapping):
        checked = {}
        for label, entry in methods.items():
            if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
                    and isinstance(entry[1], Mapping)):
                raise TypeError(f"methods['{label}'] must be a pair (method name, options dict), "
                                f"got {entry!r}")
            checked[str(label)] = (entry[0], dict(entry[1]))
        return checked
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise TypeError("methods must be a sequence of method names or a mapping label -> "
                        f"(method name, options); got {type(methods).__name__}")
    return {name: (name, {}) for name in methods}


def stage_attributions(model: nn.Module, inputs: torch.Tensor, methods: Methods, *,
                       mode: str = "cascading", target: Target = None, layers: Layers = None,
                       seed: int = 0, init: Init = "default", progress: bool = False,
                       ) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """Every method's attributions for the original model (stage ``"original"``) and then for
    each stage of ``randomize(model, mode, ...)``: ``(stage, {label: attributions})``.

    ``target=None`` explains the class the *original* model predicts, in every stage.
    """
    specs = _methods(methods)
    check_inputs(inputs)
    check_same_device(model, inputs)
    indices = target_indices(model, inputs, target)
    stages = randomize(model, mode, layers=layers, seed=seed, init=init)
    total = len(_resolve_layers(model, layers)) + 1
    bar = tqdm(total=total, desc=f"sanity check ({mode})", disable=not progress, leave=False)
    with bar:
        for stage, current in _with_original(model, stages):
            bar.set_postfix(stage=stage)
            yield stage, {label: attribute(current, inputs, name, target=indices, **options)
                          for label, (name, options) in specs.items()}
            bar.update()


def _with_original(model, stages):
    yield "original", model
    yield from stages


def _check_metrics(metrics: Sequence[str]) -> None:
    if isinstance(metrics, str) or not metrics or any(
            m not in similarities.SIMILARITIES for m in metrics):
        raise ValueError(f"metrics must be a non-empty sequence of "
                         f"{list(similarities.SIMILARITIES)}, got {metrics!r}")


def map_similarity(maps: Mapping[str, torch.Tensor],
                   reference: Mapping[str, torch.Tensor] | torch.Tensor,
                   metrics: Sequence[str] = METRICS):
    """Each method's maps compared with its reference maps (``reference[label]``), or all of
    them with one tensor (e.g. ``similarity.edge_map(inputs)``), sample by sample.

    Returns a ``pandas.DataFrame`` with columns ``method``, ``sample``, ``metric``, ``value``.
    """
    import pandas as pd

    _check_metrics(metrics)
    rows = []
    for label, current in maps.items():
        other = reference if isinstance(reference, torch.Tensor) else reference[label]
        for metric in metrics:
            values = similarities.SIMILARITIES[metric](current, other)
            rows += [{"method": label, "sample": sample, "metric": metric, "value": float(value)}
                     for sample, value in enumerate(values)]
    return pd.DataFrame(rows, columns=["method", "sample", "metric", "value"])


# More than ten parameters: the randomization test's choices (mode, layers, seed, init, the
# metrics, the edge baseline) are keyword-only with the paper's defaults, the same names
# ``randomize`` takes; an options object would split one protocol across two calls.
def sanity_check(  # noqa: PLR0913 (see above)
        model: nn.Module, inputs: torch.Tensor, methods: Methods, *, mode: str = "cascading",
        metrics: Sequence[str] = METRICS, target: Target = None, layers: Layers = None,
        seed: int = 0, init: Init = "default", edge_baseline: bool = True,
        progress: bool = True):
    """The model parameter randomization test as a tidy table (Adebayo et al. 2018).

    For the original model and each stage of ``randomize(model, mode, layers=, seed=, init=)``
    every method explains ``inputs`` (for ``target``; ``None`` is the original model's
    predicted class, kept in every stage), and each map is compared with the original model's
    map of the same method and sample by each metric of ``workbench.similarity.SIMILARITIES``:
    ``"spearman_abs"``, ``"spearman"`` (signed), ``"ssim"``, ``"hog"``. With ``edge_baseline``
    each map is also compared with the Sobel edge map of its input (``similarity.edge_map``),
    the paper's model-free baseline.

    ``methods`` is a sequence of method names, or a mapping ``label -> (method, options)``.

    Returns
    -------
    ``pandas.DataFrame``, one row per method, stage, sample, metric and reference, columns
    ``method``, ``stage_index`` (0 is ``"original"``, then top layer first), ``stage``,
    ``sample``, ``metric``, ``reference`` (``"original"`` or ``"edges"``), ``value`` (NaN where
    a metric is undefined, e.g. for a constant map). The rows of stage 0 against the original
    are 1 by construction (the anchor of the curves). ``summarize`` gives means and spreads.
    """
    import pandas as pd

    _check_metrics(metrics)
    if isinstance(inputs, torch.Tensor) and inputs.dim() != 4:
        raise ValueError(f"inputs must be images of shape (N, C, H, W) for sanity_check (its "
                         f"metrics compare 2-D maps), got shape {tuple(inputs.shape)}")
    references: dict[str, Any] = {}
    if edge_baseline:
        references["edges"] = similarities.edge_map(inputs)
    tables = []
    stages = stage_attributions(model, inputs, methods, mode=mode, target=target, layers=layers,
                                seed=seed, init=init, progress=progress)
    for stage_index, (stage, maps) in enumerate(stages):
        if stage_index == 0:
            references = {"original": maps, **references}
        for reference, other in references.items():
            table = map_similarity(maps, other, metrics)
            tables.append(table.assign(stage_index=stage_index, stage=stage,
                                       reference=reference))
    columns = ["method", "stage_index", "stage", "sample", "metric", "reference", "value"]
    return pd.concat(tables, ignore_index=True)[columns]


def summarize(table):
    """Mean, standard deviation, quartiles and count of ``value`` over the samples, for each
    method, stage, metric and reference of a ``sanity_check`` table (NaN values left out)."""
    keys = [k for k in ("method", "stage_index", "stage", "metric", "reference")
            if k in table.columns]
    grouped = table.groupby(keys, sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", count="count")
    summary["q25"] = grouped.quantile(0.25)
    summary["q75"] = grouped.quantile(0.75)
    return summary.reset_index()
