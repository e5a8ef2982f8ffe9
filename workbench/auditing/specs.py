"""What an audit runs on, named by text (the command line) or given as objects: a model spec and
a data spec, resolved from local files only (nothing is downloaded).

Model specs, tried in this order:

- a zoo name (``workbench.models.ZOO``), e.g. ``digits_cnn_relu``;
- ``torchvision:NAME`` with a state dict ``weights`` (e.g. ``torchvision:resnet18``);
- a TorchScript file (``torch.jit.save``'s ``.pt``/``.pth``);
- ``package.module:factory`` with an optional state dict ``weights``: ``factory()`` builds the
  net. Importing a module runs its code: only name modules you trust.

State dicts are read with ``torch.load(weights_only=True)`` (no pickled code runs).

Data specs: a zoo name (the test images of the zoo model's data set, ``zoo:NAME`` or ``NAME``);
a folder of images, ``root/<class>/<image>`` (torchvision's ImageFolder layout, resized to
``size`` and ImageNet-normalised by ``workbench.data.image_folder``); or a ``.pt``/``.npz`` file
of an image tensor ``(N, C, H, W)`` (key ``inputs`` or ``x``, or the only tensor in it) with
optional labels (key ``labels`` or ``y``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench import data as datasets
from workbench import models

INPUT_KEYS = ("inputs", "x")
LABEL_KEYS = ("labels", "y")


@dataclass(frozen=True)
class AuditData:
    """Images ``(N, C, H, W)`` float32, their labels (or None) and where they came from."""

    inputs: torch.Tensor
    labels: torch.Tensor | None
    source: str


def load_model(spec: str, weights: str | Path | None = None) -> tuple[nn.Module, str]:
    """The model named by ``spec`` (see the module docstring) in eval mode, and a line saying
    what it was resolved as. ``ValueError`` listing every reading tried when none fits."""
    tried = []
    if spec in models.ZOO:
        model, _ = models.zoo(spec, progress=False)
        return model.eval(), f"zoo model {spec}"
    tried.append(f"a zoo name ({', '.join(models.ZOO)})")
    if spec.startswith("torchvision:"):
        if weights is None:
            raise ValueError(f"model '{spec}': torchvision models need a state dict file as "
                             "weights (--weights PATH); nothing is downloaded")
        name = spec.split(":", 1)[1]
        return models.torchvision_classifier(name, weights), f"torchvision {name} from {weights}"
    tried.append("torchvision:NAME")
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise ValueError(f"model '{spec}' is a file but not a TorchScript archive ({error}); "
                             "a state dict needs a builder: package.module:factory with "
                             "--weights") from None
        return model.eval(), f"TorchScript {path}"
    tried.append("a TorchScript file (no such file)")
    if ":" in spec:
        return _from_factory(spec, weights), f"{spec}()" + (f" with {weights}" if weights else "")
    tried.append("package.module:factory")
    raise ValueError(f"model '{spec}' could not be resolved; tried: {'; '.join(tried)}")


def _from_factory(spec: str, weights: str | Path | None) -> nn.Module:
    module_name, factory_name = spec.rsplit(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"model '{spec}': cannot import module '{module_name}' ({error})"
                         ) from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"model '{spec}': module '{module_name}' has no callable "
                         f"'{factory_name}'")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model '{spec}': {factory_name}() returned {type(model).__name__}, "
                        "not a torch.nn.Module")
    if weights is not None:
        state = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"weights {weights} must hold a state dict, got "
                            f"{type(state).__name__}")
        model.load_state_dict(state)
    return model.eval()


def load_data(spec: str, size: int = 224) -> AuditData:
    """The images named by ``spec`` (see the module docstring); ``size`` is the side an image
    folder's images are resized and cropped to. ``ValueError`` listing every reading tried."""
    name = spec.removeprefix("zoo:")
    if name in models.ZOO:
        data = models.zoo_data(name)
        return AuditData(data.x_test, data.y_test, f"test images of zoo model {name}")
    path = Path(spec).expanduser()
    if path.is_dir():
        data = datasets.image_folder(path, size=size, test_fraction=1.0)
        return AuditData(data.x_test, data.y_test, f"image folder {path} ({size} px)")
    if path.is_file() and path.suffix in (".pt", ".npz"):
        return _tensor_file(path)
    raise ValueError(f"data '{spec}' could not be resolved; tried: a zoo name "
                     f"({', '.join(models.ZOO)}), an image folder root/<class>/<image> and a "
                     ".pt or .npz file of tensors (no such folder or file)")


def _tensor_file(path: Path) -> AuditData:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            content = {key: torch.as_tensor(archive[key]) for key in archive.files}
    else:
        content = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(content, torch.Tensor):
            content = {"inputs": content}
    if not isinstance(content, dict):
        raise ValueError(f"data {path} must hold a tensor or a dict of tensors, got "
                         f"{type(content).__name__}")
    inputs = _entry(content, INPUT_KEYS, path, required=True)
    labels = _entry(content, LABEL_KEYS, path, required=False)
    if inputs.dim() != 4 or not inputs.is_floating_point():
        raise ValueError(f"data {path}: the images must be a float tensor (N, C, H, W), got "
                         f"{inputs.dtype} {tuple(inputs.shape)}")
    if labels is not None and (labels.dim() != 1 or len(labels) != len(inputs)):
        raise ValueError(f"data {path}: labels must have shape ({len(inputs)},), got "
                         f"{tuple(labels.shape)}")
    return AuditData(inputs.float(), None if labels is None else labels.long(), f"tensors {path}")


def _entry(content: dict, keys: tuple[str, ...], path: Path, required: bool):
    for key in keys:
        if key in content:
            return content[key]
    if required and len(content) == 1:
        return next(iter(content.values()))
    if required:
        raise ValueError(f"data {path} holds {sorted(content)}; name the images "
                         f"{' or '.join(keys)}")
    return None
