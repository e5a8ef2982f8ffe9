"""Composites: which LRP rule each weighted layer of a model gets.

LRP as recommended in practice assigns rules by a layer's type and position (Montavon et al.
2019, "Layer-wise relevance propagation: an overview", Explainable AI, LNCS 11700, section
10.3): LRP-0/epsilon on the upper dense layers, gamma or z+ on convolutions, and z^B (box) or
flat at the input layer (Bach et al. 2015 for the rules epsilon and alpha-beta). A
:class:`Composite` is a list of ``(matcher, rule)`` entries; each weighted layer (Linear,
Conv1d/2d/3d, BatchNorm) gets the rule of the first entry that matches it, by type
(:class:`ByType`), dotted name (:class:`ByName`, a glob pattern) or position (:class:`First`,
:class:`Last`, :class:`Everything`). It resolves to the engine's per-layer rules
(``Rules.layer_affine``); a layer no entry matches keeps the plain gradient, which in the
engine's ``R = x * g`` form is LRP-0.

The shipped composites follow Zennit's (0.5) names and definitions:

===========================  ===========  ================  ======  =========
composite                    first layer  convolutions      Linear  BatchNorm
===========================  ===========  ================  ======  =========
epsilon_plus                 (as others)  z+                epsilon pass
epsilon_plus_flat            flat         z+                epsilon pass
epsilon_alpha2_beta1         (as others)  alpha=2, beta=1   epsilon pass
epsilon_alpha2_beta1_flat    flat         alpha=2, beta=1   epsilon pass
epsilon_gamma_box            z^B (conv)   gamma             epsilon pass
===========================  ===========  ================  ======  =========

"First layer" is the first Linear or convolution (for ``epsilon_gamma_box`` the first
convolution) in ``model.named_modules()`` order. A BatchNorm that follows a weighted layer is
merged into it by the engine and takes that layer's rule; ``pass`` applies to one on its own.
"""
from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from workbench.lrp_rules import AlphaBetaRule, FlatRule, GammaRule, PassRule, ZBoxRule
from workbench.rules import AffineRule, EpsilonRule

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: the modules the engine's affine rules apply to
WEIGHTED = (nn.Linear, *CONVOLUTIONS, *BATCH_NORMS)

Layers = Sequence[tuple[str, nn.Module]]


class Matcher:
    """Says whether an entry of a composite applies to one weighted layer."""

    def matches(self, name: str, module: nn.Module, layers: Layers) -> bool:
        """``layers``: every weighted layer of the model as ``(name, module)``, in order."""
        raise NotImplementedError


class ByType(Matcher):
    """Layers that are instances of one of ``types``."""

    def __init__(self, *types: type):
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError(f"ByType takes module classes, got {types!r}")
        self.types = types

    def matches(self, name, module, layers):
        return isinstance(module, self.types)

    def __repr__(self) -> str:
        return f"ByType({', '.join(t.__name__ for t in self.types)})"


class ByName(Matcher):
    """Layers whose dotted name matches the glob ``pattern`` (``fnmatch``, e.g. ``features.*``)."""

    def __init__(self, pattern: str):
        if not isinstance(pattern, str):
            raise TypeError(f"ByName takes a glob pattern (str), got {type(pattern).__name__}")
        self.pattern = pattern

    def matches(self, name, module, layers):
        return fnmatch.fnmatchcase(name, self.pattern)

    def __repr__(self) -> str:
        return f"ByName({self.pattern!r})"


class First(ByType):
    """The first layer (in ``named_modules`` order) of one of ``types`` (default: Linear or
    convolution)."""

    def __init__(self, *types: type):
        super().__init__(*(types or (nn.Linear, *CONVOLUTIONS)))

    def matches(self, name, module, layers):
        candidates = [n for n, m in layers if isinstance(m, self.types)]
        return bool(candidates) and name == candidates[0]

    def __repr__(self) -> str:
        return "First" + super().__repr__()[len("ByType"):]


class Last(First):
    """The last layer of one of ``types`` (default: Linear or convolution)."""

    def matches(self, name, module, layers):
        candidates = [n for n, m in layers if isinstance(m, self.types)]
        return bool(candidates) and name == candidates[-1]

    def __repr__(self) -> str:
        return "Last" + super().__repr__()[len("First"):]


class Everything(Matcher):
    """Every weighted layer."""

    def matches(self, name, module, layers):
        return True

    def __repr__(self) -> str:
        return "Everything()"


@dataclass(frozen=True)
class Composite:
    """``(matcher, rule)`` entries; a weighted layer gets the rule of the first that matches.

    Example: ``Composite([(First(), FlatRule()), (ByType(nn.Conv2d), GammaRule(0.25)),
    (Everything(), EpsilonRule(1e-6))])``.
    """

    entries: tuple[tuple[Matcher, AffineRule], ...]
    name: str = "custom"

    def __post_init__(self):
        entries = tuple(tuple(entry) for entry in self.entries)
        if not all(len(e) == 2 and isinstance(e[0], Matcher) and isinstance(e[1], AffineRule)
                   for e in entries):
            raise TypeError("a Composite's entries must be (Matcher, AffineRule) pairs, e.g. "
                            "(ByType(nn.Linear), EpsilonRule())")
        object.__setattr__(self, "entries", entries)

    def rules_for(self, model: nn.Module) -> dict[str, AffineRule | None]:
        """Every weighted layer of ``model`` (dotted name, in order) and its rule (``None``: no
        entry matches, the plain gradient, i.e. LRP-0)."""
        layers = [(name, module) for name, module in model.named_modules()
                  if isinstance(module, WEIGHTED)]
        return {name: next((rule for matcher, rule in self.entries
                             if matcher.matches(name, module, layers)), None)
                for name, module in layers}

    def __repr__(self) -> str:
        return f"Composite({self.name!r}, {len(self.entries)} entries)"


def _zennit_style(first: tuple[Matcher, AffineRule] | None, convolution: AffineRule,
                  epsilon: float, bias: bool, name: str) -> Composite:
    entries = [] if first is None else [first]
    entries += [(ByType(*BATCH_NORMS), PassRule()), (ByType(*CONVOLUTIONS), convolution),
                (ByType(nn.Linear), EpsilonRule(epsilon, bias=bias))]
    return Composite(tuple(entries), name)


def epsilon_plus(epsilon=1e-6, stabilizer=1e-6, bias=True) -> Composite:
    """z+ on convolutions, epsilon on Linear layers (Zennit's ``EpsilonPlus``)."""
    z_plus = AlphaBetaRule(1.0, 0.0, stabilizer, bias)
    return _zennit_style(None, z_plus, epsilon, bias, "epsilon_plus")


def epsilon_plus_flat(epsilon=1e-6, stabilizer=1e-6, bias=True) -> Composite:
    """``epsilon_plus`` with flat on the first layer (Zennit's ``EpsilonPlusFlat``)."""
    z_plus = AlphaBetaRule(1.0, 0.0, stabilizer, bias)
    return _zennit_style((First(), FlatRule(stabilizer, bias)), z_plus, epsilon, bias,
                         "epsilon_plus_flat")


def epsilon_alpha2_beta1(epsilon=1e-6, stabilizer=1e-6, bias=True) -> Composite:
    """alpha=2, beta=1 on convolutions, epsilon on Linear layers (Zennit's
    ``EpsilonAlpha2Beta1``)."""
    return _zennit_style(None, AlphaBetaRule(2.0, 1.0, stabilizer, bias), epsilon, bias,
                         "epsilon_alpha2_beta1")


def epsilon_alpha2_beta1_flat(epsilon=1e-6, stabilizer=1e-6, bias=True) -> Composite:
    """``epsilon_alpha2_beta1`` with flat on the first layer."""
    return _zennit_style((First(), FlatRule(stabilizer, bias)),
                         AlphaBetaRule(2.0, 1.0, stabilizer, bias), epsilon, bias,
                         "epsilon_alpha2_beta1_flat")


def epsilon_gamma_box(epsilon=1e-6, gamma=0.25, low=0.0, high=1.0, stabilizer=1e-6, bias=True
                      ) -> Composite:
    """z^B on the first convolution, gamma on the others, epsilon on Linear layers (Zennit's
    ``EpsilonGammaBox``; Montavon et al. 2019, section 10.3)."""
    return _zennit_style((First(*CONVOLUTIONS), ZBoxRule(low, high, stabilizer, bias)),
                         GammaRule(gamma, stabilizer, bias), epsilon, bias, "epsilon_gamma_box")


#: the shipped composites by name; each takes those of the LRP method's options it names
COMPOSITES: dict[str, Callable[..., Composite]] = {
    builder.__name__: builder for builder in (
        epsilon_plus, epsilon_plus_flat, epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat,
        epsilon_gamma_box)
}


def resolve(composite: str | Composite, **options: Any) -> Composite:
    """The composite ``composite`` names (built with ``options``: epsilon, gamma, low, high,
    stabilizer, bias), or ``composite`` itself."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str) and composite in COMPOSITES:
        builder = COMPOSITES[composite]
        accepted = inspect.signature(builder).parameters
        return builder(**{name: value for name, value in options.items() if name in accepted})
    raise ValueError(f"composite must be one of {list(COMPOSITES)} or a "
                     f"workbench.composites.Composite, got {composite!r}")


def lrp_rules(model: nn.Module, composite: str | Composite = "epsilon_plus",
              **options: Any) -> dict[str, AffineRule | None]:
    """Which rule each weighted layer of ``model`` gets under ``composite`` (``None``: the plain
    gradient, i.e. LRP-0). A BatchNorm after a weighted layer is merged into it and takes its
    rule; its own entry applies when it stands alone."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return resolve(composite, **options).rules_for(model)

