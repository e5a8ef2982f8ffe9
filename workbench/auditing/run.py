"""``workbench.audit``: which attribution methods can be trusted on a given model and data.

For every method that runs on the model, at each seed (a random subset of the images, random
re-initialisations and random subsets of patches drawn under it): the cascading and independent
model parameter randomization tests and, given a net trained on permuted labels, the data
randomization test (Adebayo et al. 2018, arXiv 1810.03292); Sensitivity-n (Ancona et al. 2018,
arXiv 1711.06104); region perturbation, MoRF against LeRF (Samek et al. 2017, arXiv
1509.06321); the completeness gap; the methods' pairwise agreement. The tests and their
thresholds are ``workbench.auditing.verdicts.TESTS``; the measurements
``workbench.auditing.measure``; the written report ``workbench.auditing.page``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.auditing import measure, verdicts
from workbench.auditing.specs import AuditData
from workbench.checks import Target, check_inputs, check_model
from workbench.claims import parse_seeds
from workbench.forward import target_indices
from workbench.registry import get_method
from workbench.similarity import spearman

#: the methods audited when none are named: the sanity checks' and Ancona et al.'s methods
DEFAULT_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "guided_backprop",
                   "grad_cam", "lrp_epsilon", "deeplift_rescale")
#: what a method that cannot run on the model raises (the engine's UnsupportedOperationError
#: is a NotImplementedError)
_CANNOT_RUN = (NotImplementedError, ValueError, TypeError, RuntimeError)


@dataclass
class AuditResult:
    """The verdict table (one row per method and test), every measurement as plain values
    (``results``, what ``results.json`` holds) and the figures by name."""

    verdicts: pd.DataFrame
    results: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None


def _method_table(methods: Sequence[str] | Mapping[str, tuple[str, dict]] | None,
                  budget: measure.Budget) -> dict[str, tuple[str, dict[str, Any]]]:
    if methods is None:
        methods = DEFAULT_METHODS
    if isinstance(methods, Mapping):
        table = {str(k): (v[0], dict(v[1])) for k, v in methods.items()}
    elif isinstance(methods, str) or not isinstance(methods, Sequence):
        raise TypeError("methods must be a sequence of method names, a mapping label -> "
                        f"(method, options) or None; got {type(methods).__name__}")
    else:
        table = {name: (name, {}) for name in methods}
    for name, options in table.values():
        get_method(name)  # raises naming the known methods
        if name == "integrated_gradients":
            options.setdefault("steps", budget.ig_steps)
    if not table:
        raise ValueError("methods must name at least one method")
    return table


def applicable(model: nn.Module, inputs: torch.Tensor, methods: Mapping[str, tuple[str, dict]],
               target: torch.Tensor) -> tuple[dict[str, tuple[str, dict]], dict[str, str]]:
    """The methods that explain ``inputs`` on ``model`` (tried on two inputs) and, for the
    others, why not: the engine names the operation a rule-based method has no rule for."""
    runs, skipped = {}, {}
    for label, (name, options) in methods.items():
        try:
            measure.explain(model, inputs[:2], {label: (name, options)}, target[:2])
        except _CANNOT_RUN as error:
            skipped[label] = f"{type(error).__name__}: {error}"
        else:
            runs[label] = (name, options)
    return runs, skipped


def _budget(budget: str | measure.Budget) -> measure.Budget:
    if isinstance(budget, measure.Budget):
        return budget
    if budget not in measure.BUDGETS:
        raise ValueError(f"budget must be one of {list(measure.BUDGETS)} or a Budget, got "
                         f"{budget!r}")
    return measure.BUDGETS[budget]


def _subset(count: int, wanted: int, seed: int) -> torch.Tensor:
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:min(wanted, count)].sort().values


# Keyword-only choices of one protocol (seeds, budget, output, the optional random-label net);
# splitting them into an options object would split one call in two.
def audit(model: nn.Module, data: torch.Tensor | AuditData,  # noqa: PLR0913 (see above)
          methods: Sequence[str] | Mapping[str, tuple[str, dict]] | None = None, *,
          target: Target = None, seeds: Sequence[int] | str = (0, 1, 2),
          budget: str | measure.Budget = "quick", out: str | Path | None = None,
          random_labels_model: nn.Module | None = None, progress: bool = True,
          description: Mapping[str, str] | None = None) -> AuditResult:
    """Audit the attribution ``methods`` on ``model`` and images ``data`` ``(N, C, H, W)``.

    Parameters
    ----------
    methods:
        Method names, a mapping ``label -> (method, options)``, or None for
        ``DEFAULT_METHODS``. Methods that cannot run on the model are skipped with the reason.
    target:
        As for ``workbench.attribute``; None explains the class the model predicts.
    seeds:
        Each seed draws ``budget.images`` of the images, the re-initialisations and the
        Sensitivity-n subsets; intervals are over the seeds (``workbench.claims``).
    budget:
        ``"quick"``, ``"full"`` (``measure.BUDGETS``) or a ``measure.Budget``.
    out:
        Folder for ``results.json``, ``verdicts.csv`` and ``report.html``; None writes nothing.
    random_labels_model:
        The same architecture trained on permuted labels (``workbench.train_with_random_labels``)
        for the data randomization test; without it that test is not applicable.
    description:
        Lines naming the model and the data in the report (``{"model": ..., "data": ...}``).

    The model and data are left unchanged.
    """
    check_model(model)
    inputs = data.inputs if isinstance(data, AuditData) else data
    check_inputs(inputs)
    if inputs.dim() != 4:
        raise ValueError(f"data must be images of shape (N, C, H, W), got shape "
                         f"{tuple(inputs.shape)}")
    seeds = parse_seeds(seeds)
    spec = _budget(budget)
    all_targets = target_indices(model, inputs, target)
    table = _method_table(methods, spec)
    runs, skipped = applicable(model, inputs, table, all_targets)
    measured = _measure_seeds(model, inputs, all_targets, runs, seeds, spec,
                              random_labels_model, progress)
    rows = _verdict_rows(runs, skipped, measured, seeds, random_labels_model is not None)
    results = {"model": dict(description or {}), "seeds": seeds, "budget": vars(spec),
               "methods": {label: {"method": name, "options": options}
                           for label, (name, options) in table.items()},
               "skipped": skipped, "verdicts": rows, **measured.summary()}
    result = AuditResult(pd.DataFrame(rows), results)
    if runs:
        from workbench.auditing import page

        result.figures = page.figures(measured, inputs, all_targets, runs, model)
    if out is not None:
        from workbench.auditing import page

        result.output_dir = page.write(result, out)
    return result


@dataclass
class Measured:
    """Every seed's measurements, gathered for the verdicts and the figures."""

    randomization: dict[str, list[pd.DataFrame]] = field(
        default_factory=lambda: {"cascading": [], "independent": []})
    randomization_error: str = ""
    data_randomization: dict[str, list[float]] = field(default_factory=dict)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    degradation: list[dict[str, Any]] = field(default_factory=list)
    completeness: dict[str, list[float]] = field(default_factory=dict)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    first_inputs: torch.Tensor | None = None

    def summary(self) -> dict[str, Any]:
        """The measurements as plain values for ``results.json``."""
        summary = {"sensitivity_n": dict(zip(map(str, self.seeds), self.sensitivity)),
                   "region_perturbation": dict(zip(map(str, self.seeds), self.degradation)),
                   "completeness_relative_gap": self.completeness,
                   "data_randomization_spearman_abs": self.data_randomization,
                   "agreement": self.mean_agreement()}
        for mode, tables in self.randomization.items():
            summary[f"{mode}_randomization"] = (
                [] if not tables else _stage_summary(tables).to_dict(orient="records"))
        if self.randomization_error:
            summary["randomization_not_applicable"] = self.randomization_error
        return summary

    def mean_agreement(self) -> dict[str, Any]:
        if not self.agreement:
            return {}
        labels = self.agreement[0]["labels"]
        return {"labels": labels,
                "spearman": np.mean([a["spearman"] for a in self.agreement], axis=0).tolist(),
                "relative_difference": np.max([a["relative_difference"]
                                               for a in self.agreement], axis=0).tolist()}


def _stage_summary(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean and standard deviation over the inputs of every seed, per method, stage and
    metric."""
    from workbench.randomization import summarize

    return summarize(pd.concat(tables, ignore_index=True))


def _measure_seeds(model, inputs, all_targets, runs, seeds, spec, random_labels_model,
                   progress) -> Measured:
    measured = Measured(seeds=list(seeds))
    if not runs:
        return measured
    steps = ["maps", "cascading", "independent", "Sensitivity-n", "region perturbation",
             "completeness"]
    bar = tqdm(total=len(seeds) * len(steps), desc="audit", disable=not progress)
    with bar:
        for seed in seeds:
            chosen = _subset(len(inputs), spec.images, seed)
            x, t = inputs[chosen], all_targets[chosen]
            if measured.first_inputs is None:
                measured.first_inputs = chosen
            bar.set_postfix(seed=seed, stage="maps")
            maps = measure.explain(model, x, runs, t)
            measured.agreement.append(measure.agreement(maps))
            bar.update()
            for mode, stages in (("cascading", spec.cascading_stages),
                                 ("independent", spec.independent_stages)):
                bar.set_postfix(seed=seed, stage=mode)
                if not measured.randomization_error:
                    try:
                        measured.randomization[mode].append(measure.randomization_table(
                            model, x, runs, t, maps, mode, stages, seed).assign(seed=seed))
                    except ValueError as error:  # e.g. a layer without reset_parameters()
                        measured.randomization_error = str(error)
                bar.update()
            if random_labels_model is not None:
                other = measure.explain(random_labels_model, x, runs, t)
                for label in runs:
                    value = spearman(maps[label], other[label]).double().nanmean()
                    measured.data_randomization.setdefault(label, []).append(float(value))
            bar.set_postfix(seed=seed, stage="Sensitivity-n")
            measured.sensitivity.append(measure.sensitivity(model, x, maps, t, spec, seed))
            bar.update()
            bar.set_postfix(seed=seed, stage="region perturbation")
            measured.degradation.append(measure.region_perturbation(model, x, maps, t, spec,
                                                                    seed))
            bar.update()
            bar.set_postfix(seed=seed, stage="completeness")
            for label, gap in measure.relative_completeness_gap(model, x, maps, t).items():
                measured.completeness.setdefault(label, []).append(gap)
            bar.update()
    return measured


def _stage_values(tables: list[pd.DataFrame], label: str, which: str) -> list[float]:
    """Per seed, the mean Spearman (absolute) of ``label``'s maps to the original at the last
    (``which="last"``) or first stage."""
    values = []
    for table in tables:
        rows = table[(table["method"] == label) & (table["metric"] == "spearman_abs")]
        stage = rows["stage_index"].max() if which == "last" else rows["stage_index"].min()
        values.append(float(rows.loc[rows["stage_index"] == stage, "value"].mean()))
    return values


def _verdict_rows(runs, skipped, measured: Measured, seeds, has_random_labels) -> list[dict]:
    rows = []
    for label, reason in skipped.items():
        rows += [verdicts.not_applicable(test, label, f"the method does not run on this model "
                                         f"({reason})") for test in verdicts.TESTS]
    for label, (name, _) in runs.items():
        for mode, which in (("cascading", "last"), ("independent", "first")):
            test = f"{mode} randomization"
            if measured.randomization_error:
                rows.append(verdicts.not_applicable(test, label, measured.randomization_error))
            else:
                rows.append(verdicts.verdict(test, label, _stage_values(
                    measured.randomization[mode], label, which), seeds))
        if has_random_labels:
            rows.append(verdicts.verdict("data randomization", label,
                                         measured.data_randomization[label], seeds))
        else:
            rows.append(verdicts.not_applicable(
                "data randomization", label, "no net trained on permuted labels was given"))
        sensitivity = [float(np.nanmean(s["curves"][label])) if np.isfinite(
            s["curves"][label]).any() else float("nan") for s in measured.sensitivity]
        rows.append(verdicts.verdict("Sensitivity-n", label, sensitivity, seeds))
        rows.append(verdicts.verdict("region perturbation", label,
                                     [d["gap"][label] for d in measured.degradation], seeds))
        if name in verdicts.COMPLETE_METHODS:
            rows.append(verdicts.verdict("completeness", label, measured.completeness[label],
                                         seeds))
        else:
            gaps = ", ".join(f"{v:.3g}" for v in measured.completeness[label])
            rows.append(verdicts.not_applicable(
                "completeness", label, f"{name} does not claim completeness (measured relative "
                f"gap per seed: {gaps})"))
    return rows
