"""Notebook 05 (the interpretability study): the study's configuration and stimuli for a zoo
model, a layer and the bases to compare (``workbench.study``, ``workbench.study_stimuli``)."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from workbench.basis import fit_basis
from workbench.data import ImageData
from workbench.study import DirectionStimuli, StudyConfig
from workbench.study_stimuli import stimuli_from_bases


def parse_kinds(text: str) -> list[str]:
    """``"neurons,pca"`` as a list of basis kinds (at least one, no repeats)."""
    from workbench.basis import KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"bases must be distinct names among {list(KINDS)}, got {text!r}")
    return kinds


def study_stimuli(model: nn.Module, data: ImageData, layer: str, kinds: Sequence[str],
                  directions_per_basis: int, references: int, queries: int, pool: int,
                  progress: bool = True) -> list[DirectionStimuli]:
    """Bases of ``layer`` fitted on the training images, directions ranked on the first
    ``pool`` test images (``stimuli_from_bases``)."""
    bases = {kind: fit_basis(model, data.x_train, layer, kind=kind, progress=progress)
             for kind in kinds}
    return stimuli_from_bases(model, data.x_test[:pool], bases, directions_per_basis,
                              references, queries)


def study_config(name: str, model_name: str, layer: str, kinds: Sequence[str], trials: int,
                 references: int) -> StudyConfig:
    """The study's settings; the model, layer and bases are kept for the record (and make a
    study with other choices a different study)."""
    return StudyConfig(name, trials_per_participant=trials, references_shown=references,
                       details={"model": model_name, "layer": layer, "bases": list(kinds)})
