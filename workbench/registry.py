"""The method registry: each attribution method is a name, its declared options and a function.

Options are declared with their kind, default and help so that callers (the command line, the
method picker widget) can build controls and validate values without knowing any method. Each
kind is one entry of ``OPTION_KINDS``: what it accepts, how a value is checked, and how it is
written as text (a command-line argument, a text field) and read back.
"""
from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.checks import check_finite


# --- option kinds --------------------------------------------------------------------------
# A check takes a value that is not None and returns it converted, or raises TypeError or
# ValueError whose message says what it got ("got 2.5"); ``Option.validate`` adds what the
# option is and what it accepts. A parse reads text and raises ValueError saying what text it
# accepts; a format writes a value as text that the parse reads back.


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_float(value: Any, option: Option) -> float:
    if not _is_number(value):
        raise TypeError(f"got {value!r}")
    return float(value)


def _check_int(value: Any, option: Option) -> int:
    if not _is_integer(value):
        raise TypeError(f"got {value!r}")
    return int(value)


def _check_bool(value: Any, option: Option) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"got {value!r}")
    return value


def _check_baseline(value: Any, option: Option) -> float | torch.Tensor | tuple:
    if isinstance(value, tuple):  # one per input, for a tuple of inputs
        for entry in value:
            _check_baseline(entry, option)
        return value
    if not (_is_number(value) or isinstance(value, torch.Tensor)):
        raise TypeError(f"got {type(value).__name__}")
    return value


def _check_shape(value: Any, option: Option) -> tuple[int, ...]:
    if _is_integer(value):
        value = (int(value),)
    if not (isinstance(value, (tuple, list)) and value
            and all(_is_integer(v) and v >= 1 for v in value)):
        raise ValueError(f"got {value!r}")
    return tuple(int(v) for v in value)


def _check_layer(value: Any, option: Option) -> str | nn.Module:
    if not isinstance(value, (str, nn.Module)):
        raise TypeError(f"got {type(value).__name__}")
    return value


def _check_choice(value: Any, option: Option) -> Any:
    if value not in option.choices:
        raise ValueError(f"got {value!r}")
    return value


def _check_named(value: Any, option: Option) -> Any:
    if isinstance(value, str) and value not in option.choices:
        raise ValueError(f"got {value!r}")
    return value


def _check_mask(value: Any, option: Option) -> torch.Tensor | tuple:
    if isinstance(value, tuple):  # one per input, for a tuple of inputs
        for entry in value:
            _check_mask(entry, option)
        return value
    if not isinstance(value, torch.Tensor) or value.is_floating_point():
        got = f"{value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(f"got {got}")
    return value


def _check_anything(value: Any, option: Option) -> Any:
    return value


def _is_none(text: str) -> bool:
    return text.strip().lower() in ("", "none")


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"must be a number such as 0.5 or 1e-6, got {text!r}") from None


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(f"must be one of {list(_TRUE + _FALSE)}, got {text!r}")
    return word in _TRUE


def _parse_seed(text: str) -> int | None:
    """``"7"`` -> ``7``; empty or ``none`` -> ``None``."""
    if _is_none(text):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be an integer, or empty for None, got {text!r}") from None


def _parse_shape(text: str) -> tuple[int, ...] | None:
    """``"2, 2"`` or ``"(2, 2)"`` -> ``(2, 2)``; empty or ``none`` -> ``None``."""
    inner = text.strip().strip("()[]")
    if _is_none(inner):
        return None
    try:
        return tuple(int(part) for part in inner.split(",") if part.strip())
    except ValueError:
        raise ValueError("must be comma-separated integers such as '2, 2' (empty: None), got "
                         f"{text!r}") from None


def _parse_name(text: str) -> str | None:
    """A dotted module name; empty or ``none`` -> ``None``."""
    return None if _is_none(text) else text.strip()


def _parse_code_only(text: str) -> None:
    """Only ``None`` (empty or ``none``) has a text form; other values are set in code."""
    if not _is_none(text):
        raise ValueError(f"can only be set in code (as text only empty or none), got {text!r}")


def _format_number(value: Any) -> str:
    if not _is_number(value):
        raise ValueError(f"{type(value).__name__} has no text form; set it in code")
    return repr(value)


def _format_text(value: Any) -> str:
    """``None`` -> ``""``; a string or an integer as it is; anything else cannot be text."""
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"{type(value).__name__} has no text form; set it in code")
    return str(value)


def _format_shape(value: Any) -> str:
    return "" if value is None else ", ".join(str(int(v)) for v in value)


def _format_bool(value: Any) -> str:
    return "true" if value else "false"


def _format_named(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} has no text form; set it in code")
    return value


def _format_code_only(value: Any) -> str:
    if value is not None:
        raise ValueError(f"{type(value).__name__} has no text form; set it in code")
    return ""


@dataclass(frozen=True)
class OptionKind:
    """What an option of this kind accepts, how a value is checked, and its text form.

    ``check(value, option)`` returns the value converted (never given ``None`` when
    ``none_allowed``); ``parse(text)`` reads the text form (a command-line argument, a text
    field) and ``format(value)`` writes it, so that ``parse(format(value)) == value``.
    """

    name: str
    accepts: str
    check: Callable[[Any, Option], Any]
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    none_allowed: bool = False


#: every option kind, by name: the one table the registry, the command line and the widgets use
OPTION_KINDS: dict[str, OptionKind] = {kind.name: kind for kind in (
    OptionKind("float", "a number", _check_float, _parse_float, _format_number),
    OptionKind("int", "an integer", _check_int, _parse_int, _format_text),
    OptionKind("bool", "True or False", _check_bool, _parse_bool, _format_bool),
    OptionKind("seed", "an integer or None", _check_int, _parse_seed, _format_text,
               none_allowed=True),
    OptionKind("baseline", "a number or a tensor broadcastable to the inputs (one per input, as a "
               "tuple, for a tuple of inputs)", _check_baseline,
               _parse_float, _format_number),
    OptionKind("shape", "a tuple of positive integers over the non-batch dimensions, or None",
               _check_shape, _parse_shape, _format_shape, none_allowed=True),
    OptionKind("layer", "a module of the model or its dotted name, or None", _check_layer,
               _parse_name, _format_text, none_allowed=True),
    OptionKind("choice", "one of the listed choices", _check_choice, str.strip, _format_text),
    OptionKind("named", "one of the listed names, or an object the method documents",
               _check_named, str.strip, _format_named),
    OptionKind("mask", "an integer tensor broadcastable to the inputs (one per input, as a "
               "tuple, for a tuple of inputs), or None", _check_mask,
               _parse_code_only, _format_code_only, none_allowed=True),
    OptionKind("object", "a value the method documents", _check_anything, _parse_code_only,
               _format_code_only, none_allowed=True),
)}

#: option kinds and what they accept
KINDS: dict[str, str] = {name: kind.accepts for name, kind in OPTION_KINDS.items()}


@dataclass(frozen=True)
class Option:
    """One option of a method: its name, kind (a key of ``OPTION_KINDS``), default and bounds."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    #: the method cannot run without a value from the caller (the default is only a placeholder)
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"option '{self.name}': kind must be one of {list(OPTION_KINDS)}, "
                             f"got {self.kind!r}")

    def validate(self, value: Any, method: str) -> Any:
        """Return ``value`` converted to the option's kind, or raise naming the option."""
        where = f"option '{self.name}' of {method}"
        kind = OPTION_KINDS[self.kind]
        if value is None and kind.none_allowed:
            return None
        try:
            value = kind.check(value, self)
        except (TypeError, ValueError) as error:
            accepted = f"one of {list(self.choices)}" if self.choices else kind.accepts
            raise type(error)(f"{where} must be {accepted}, {error}") from None
        if self.minimum is not None and _is_number(value) and value < self.minimum:
            raise ValueError(f"{where} must be >= {self.minimum}, got {value}")
        if self.maximum is not None and _is_number(value) and value > self.maximum:
            raise ValueError(f"{where} must be <= {self.maximum}, got {value}")
        return value

    def parse(self, text: str, method: str) -> Any:
        """The value written as ``text`` (a command-line argument, a text field), not yet
        validated; ``ValueError`` naming the option if the text cannot be read."""
        try:
            return OPTION_KINDS[self.kind].parse(text)
        except ValueError as error:
            raise ValueError(f"option '{self.name}' of {method} {error}") from None

    def format(self, value: Any) -> str:
        """``value`` as the text ``parse`` reads back; ``ValueError`` if it has none (tensors,
        modules, objects: set them in code)."""
        try:
            return OPTION_KINDS[self.kind].format(value)
        except ValueError as error:
            raise ValueError(f"option '{self.name}': {error}") from None


@dataclass(frozen=True)
class Requirement:
    """A kind of model that a method applies to only, such as models that run attention.

    ``met_by(model)`` says from the model's modules alone (no forward pass) whether it is of
    this kind; lists of methods (``methods(model)``, the method picker) offer the method only
    for such models. Calling the method on another model raises an error that says why.
    """

    name: str
    description: str
    met_by: Callable[[nn.Module], bool] = field(repr=False)
    #: whether every plain network (dense and convolutional layers, batch normalisation,
    #: elementwise activations, pooling) meets it: the method then counts as general
    plain: bool = False


@dataclass(frozen=True)
class Method:
    """An attribution method: ``run(model, inputs, target, **options) -> attributions``.

    ``requires``: the kind of model the method applies to only (``None``: every model).
    ``rows_by_sample``: the method calls the model only on its inputs in their order, or on
    batches whose rows it names with ``workbench.sample_rows.rows_of``; views of a layer or of
    per-sample forward arguments then explain all samples at once (else one at a time).
    """

    name: str
    run: Callable[..., torch.Tensor]
    description: str
    options: tuple[Option, ...] = ()
    reference: str = ""
    rules: Callable[..., Any] | None = field(default=None, repr=False)
    requires: Requirement | None = None
    rows_by_sample: bool = False

    def applies_to(self, model: nn.Module) -> bool:
        """Whether the method applies to ``model`` (it meets ``requires``, if any)."""
        return self.requires is None or self.requires.met_by(model)

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


def _declared() -> dict[str, Method]:
    """The registry, with every method declared: importing ``workbench.methods`` registers
    them (``import workbench`` alone no longer does, it loads its names on first use)."""
    import workbench.methods  # noqa: F401

    return _REGISTRY


def methods(model: nn.Module | None = None) -> list[str]:
    """Names of every registered attribution method; with ``model``, those that apply to it
    (``Method.applies_to``: methods for a kind of model only, such as attention rollout, are
    left out for other models)."""
    if model is None:
        return list(_declared())
    return [name for name, method in _declared().items() if method.applies_to(model)]


def general_methods() -> list[str]:
    """Names of the methods that apply to every plain network (dense and convolutional layers,
    batch normalisation, elementwise activations, pooling): no ``requires``, or one that every
    such network meets (``Requirement.plain``, such as the rule-based methods' need for layers
    they have rules for)."""
    return [name for name, method in _declared().items()
            if method.requires is None or method.requires.plain]


def get_method(name: str) -> Method:
    """The method called ``name``; ``ValueError`` listing the known names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a method name (str), got {type(name).__name__}")
    if name not in _declared():
        close = difflib.get_close_matches(name, _declared(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown method '{name}'.{hint} Known methods: {', '.join(_declared())}")
    return _declared()[name]


# --- option values beyond one option -------------------------------------------------------


def build_rules(method: Method, values: Mapping[str, Any]) -> Any | None:
    """``method``'s backward rules (``Method.rules``) for its bound option ``values`` (those its
    rules take), or ``None`` for a method without rules. Raises on combinations the rules
    refuse, such as ``alpha - beta != 1``."""
    if method.rules is None:
        return None
    accepted = inspect.signature(method.rules).parameters
    return method.rules(**{name: value for name, value in values.items() if name in accepted})


def takes_layer_rules(method: str) -> bool:
    """Whether ``method`` has a ``layer_rules`` option (per-layer LRP rule overrides)."""
    return any(option.name == "layer_rules" for option in get_method(method).options)


def check_combination(method: Method, values: Mapping[str, Any]) -> None:
    """Checks beyond each option alone: numbers are finite, and the method's rules accept the
    values together (``build_rules``)."""
    for name, value in values.items():
        check_finite(value, f"option '{name}' of {method.name}")
    build_rules(method, values)


def non_default(method: Method, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``method``'s defaults."""
    defaults = {option.name: option.default for option in method.options}
    return {name: value for name, value in values.items() if not _same(value, defaults[name])}


def validate_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The validated ``options`` of ``method`` that differ from its defaults; raises otherwise.

    ``Method.bind`` checks each option; ``check_combination`` checks them together.
    """
    spec = get_method(method)
    values = spec.bind(options)
    check_combination(spec, values)
    return {name: value for name, value in non_default(spec, values).items() if name in options}


def _same(value: Any, default: Any) -> bool:
    """Whether ``value`` equals ``default`` (False when they do not compare)."""
    if type(value) is not type(default) and not (
            isinstance(value, (int, float)) and isinstance(default, (int, float))):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError, RuntimeError):
        return False
