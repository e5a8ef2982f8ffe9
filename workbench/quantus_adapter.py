"""An ``explain_func`` that lets Quantus (Hedström et al. 2023, JMLR, arXiv 2202.06861) call the
workbench's methods."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.attribution import attribute
from workbench.checks import check_model, model_device


def quantus_explain(model: nn.Module, inputs: np.ndarray | torch.Tensor,
                    targets: np.ndarray | torch.Tensor | int | None,
                    method: str = "gradient", device: str | torch.device | None = None,
                    **options) -> np.ndarray:
    """An ``explain_func`` for Quantus: ``metric(model, x, y, explain_func=quantus_explain,
    explain_func_kwargs={"method": "integrated_gradients", "steps": 16})``.

    Quantus calls ``explain_func(model=model, inputs=x_batch, targets=y_batch, **kwargs)`` with
    numpy arrays (and ``device`` when the metric was given one). The arrays become tensors on
    the model's device (``device`` for a model without parameters) in the model's floating dtype;
    the result is ``workbench.attribute(model, inputs, method, target=targets, **options)`` as a
    numpy array of the inputs' shape.
    """
    if not isinstance(model, nn.Module) and hasattr(model, "get_model"):
        model = model.get_model()  # a Quantus ModelInterface
    check_model(model)
    where = model_device(model) or torch.device(device if device is not None else "cpu")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    x = x.to(device=where, dtype=dtype or (x.dtype if x.is_floating_point() else torch.float32))
    if targets is not None and not isinstance(targets, int):
        targets = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor)
                                  else targets).to(device=where, dtype=torch.long).reshape(-1)
    result = attribute(model, x, method, target=targets, **options)
    return result.detach().cpu().numpy()
