"""The method registry: each attribution method is a name, its declared options and a function.

Options are declared with their kind, default and help so that callers (the CLI, the method
picker widget) can build controls and validate values without knowing any method.
"""
from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: option kinds and what they accept
KINDS = {
    "float": "a number",
    "int": "an integer",
    "bool": "True or False",
    "seed": "an integer or None",
    "baseline": "a number or a tensor broadcastable to the inputs",
    "shape": "a tuple of positive integers over the non-batch dimensions, or None",
    "layer": "a module of the model or its dotted name, or None",
    "choice": "one of the listed choices",
    "mask": "an integer tensor broadcastable to the inputs, or None",
    "object": "a value the method documents",
}


@dataclass(frozen=True)
class Option:
    """One option of a method: its name, kind (see ``KINDS``), default and bounds."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    #: the method cannot run without a value from the caller (the default is only a placeholder)
    required: bool = False

    def validate(self, value: Any, method: str) -> Any:
        """Return ``value`` converted to the option's kind, or raise naming the option."""
        where = f"option '{self.name}' of {method}"
        if self.kind in ("seed", "shape", "layer", "mask") and value is None:
            return None
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{where} must be {KINDS['float']}, got {value!r}")
            value = float(value)
        elif self.kind in ("int", "seed"):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{where} must be {KINDS[self.kind]}, got {value!r}")
            value = int(value)
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{where} must be {KINDS['bool']}, got {value!r}")
        elif self.kind == "baseline":
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
                raise TypeError(f"{where} must be {KINDS['baseline']}, got {type(value).__name__}")
        elif self.kind == "shape":
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = (int(value),)
            if not (isinstance(value, (tuple, list)) and value
                    and all(isinstance(v, numbers.Integral) and v >= 1 for v in value)):
                raise ValueError(f"{where} must be {KINDS['shape']}, got {value!r}")
            value = tuple(int(v) for v in value)
        elif self.kind == "layer":
            if not isinstance(value, (str, nn.Module)):
                raise TypeError(f"{where} must be {KINDS['layer']}, got {type(value).__name__}")
        elif self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        elif self.kind == "mask":
            if not isinstance(value, torch.Tensor) or value.is_floating_point():
                raise TypeError(f"{where} must be {KINDS['mask']}")
        if self.minimum is not None and isinstance(value, numbers.Real) and value < self.minimum:
            raise ValueError(f"{where} must be >= {self.minimum}, got {value}")
        if self.maximum is not None and isinstance(value, numbers.Real) and value > self.maximum:
            raise ValueError(f"{where} must be <= {self.maximum}, got {value}")
        return value


@dataclass(frozen=True)
class Method:
    """An attribution method: ``run(model, inputs, target, **options) -> attributions``."""

    name: str
    run: Callable[..., torch.Tensor]
    description: str
    options: tuple[Option, ...] = ()
    reference: str = ""
    rules: Callable[..., Any] | None = field(default=None, repr=False)

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validated option values, defaults filled in; unknown names raise ``TypeError``."""
        known = {option.name: option for option in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            accepted = ", ".join(known) or "no options"
            raise TypeError(f"{self.name} got unknown option(s) {unknown}; it accepts: {accepted}")
        return {
            name: option.validate(given[name], self.name) if name in given else option.default
            for name, option in known.items()
        }


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise ValueError(f"a method named '{method.name}' is already registered")
    _REGISTRY[method.name] = method
    return method


def methods() -> list[str]:
    """Names of every registered attribution method."""
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    """The method called ``name``; ``ValueError`` listing the known names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a method name (str), got {type(name).__name__}")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown method '{name}'.{hint} Known methods: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
