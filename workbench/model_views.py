"""The model seen as a function of what is explained, when that is not "one input tensor's
effect on an output score": several inputs, extra forward arguments, a layer's output (or
input), one hidden unit. This is Captum's call contract (a tuple of inputs,
``additional_forward_args``, the ``Layer*`` and ``Neuron*`` attributions) on the one engine:
every method runs unchanged on a single *variable*, and the user's model is called with it
through hooks that exist only while the method runs (removed on any error; the model itself
is never changed).

- **Several inputs** ``(x_1, ..., x_k)``: the variable is their features, flattened and
  concatenated per sample; the model gets them back in their shapes. Attributions come back as
  a tuple in the same structure. Baselines and feature masks are then given per input, as a
  tuple (a number applies to all); one feature-mask label used in two inputs is one group.
- **Feature masks per sample** (one row each, grouping the samples' features differently, as
  Captum allows): each sample is explained on its own with its row.
- **forward_args**: passed to the model after the inputs, unchanged. A tensor whose first
  dimension is the batch size is the sample's own argument: every row a method evaluates gets
  its sample's argument. Methods that name the samples of their rows
  (``Method.rows_by_sample``: gradient, Gradient x Input, integrated gradients, SmoothGrad)
  explain all samples at once; the others explain each sample on its own.
- **layer**: the variable is the layer's output (``attribute_to="input"``: its input) on the
  sample; the model runs on the sample's inputs with the layer's output replaced by the
  variable. The inputs may then be integers (token ids explained at the embedding's output).
  ``baseline``/``baselines`` are given in input space, as in Captum's layer methods: the
  variable's baseline is the layer's output on the baseline inputs. Other options (feature
  masks, occlusion windows, the z-box bounds) are in the layer's space. As for per-sample
  forward arguments, methods with ``rows_by_sample`` explain all samples at once.
- **neuron** ``(layer, index)``: the score explained is one unit of a hidden layer's output
  (``index`` over the non-batch dimensions, or a function of the layer's output returning one
  value per sample) instead of an output class.
- **target** beyond a class per sample: a function of the model's output returning one score
  per sample; for outputs of shape ``(N,)`` (regression) the output itself; for outputs with
  more than two dimensions a tuple index over the non-batch dimensions (``output_score``).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.checks import Target, check_inputs, expand_target
from workbench.model_layers import Layer, describe, find_layer
from workbench.progress import bar
from workbench.registry import Method
from workbench.sample_rows import current_rows

#: methods that read the model's own structure or the input's geometry, with the reason
NOT_ON_VIEWS = {
    "grad_cam": "it explains a conv layer of the model itself (its own 'layer' option)",
    "guided_grad_cam": "it explains a conv layer of the model itself (its own 'layer' option)",
    "pattern_net": "its patterns are fitted for the model's input",
    "pattern_attribution": "its patterns are fitted for the model's input",
}
#: methods whose result for a sample depends on the other samples of the batch
BATCH_METHODS = ("feature_permutation",)
#: options given in input space that a layer view maps to the layer's space
BASELINE_OPTIONS = ("baseline", "baselines")
Selector = int | Sequence[int] | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Neuron:
    """One unit of ``layer``'s output: ``index`` over its non-batch dimensions, or a function
    of the layer's output ``(B, ...)`` returning ``(B,)``."""

    name: str
    module: nn.Module
    index: Selector

    def select(self, output: torch.Tensor) -> torch.Tensor:
        if callable(self.index):
            value = self.index(output)
            if not isinstance(value, torch.Tensor) or value.shape != output.shape[:1]:
                raise ValueError(f"neuron selector must return one value per sample, shape "
                                 f"({len(output)},), got {getattr(value, 'shape', value)}")
            return value
        index = (self.index,) if isinstance(self.index, int) else tuple(self.index)
        if len(index) != output.dim() - 1 or any(
                not -size <= i < size for i, size in zip(index, output.shape[1:])):
            raise ValueError(f"neuron index {index} does not fit layer "
                             f"{describe(self.name, self.module)}'s output of shape "
                             f"(N, {', '.join(map(str, output.shape[1:]))})")
        return output[(slice(None), *index)]


def _one_per_sample(value: Any, rows: int) -> torch.Tensor:
    """A score (the target function's result, or a regression output) as the ``(B, 1)`` output
    the methods explain (class 0)."""
    if not isinstance(value, torch.Tensor) or value.shape != (rows,):
        raise ValueError(f"the score explained must be one value per sample, shape ({rows},) "
                         f"(a regression output, or what a target function returns); got "
                         f"{tuple(getattr(value, 'shape', ())) or type(value).__name__}")
    return value[:, None]


def output_score(target: Any, shape: torch.Size) -> Callable[[torch.Tensor], torch.Tensor]:
    """The score to explain for a model output of ``shape`` that is not ``(N, classes)``:
    ``(N,)`` or ``(N, 1)`` (regression) the output itself (``target`` None or 0); more
    dimensions, the entry at ``target``, a tuple index over the non-batch dimensions
    (Captum's convention), or with ``target`` None the one entry of ``(N, 1, ..., 1)``."""
    if len(shape) == 1:
        if target not in (None, 0):
            raise ValueError(f"the model returns one score per sample (shape {tuple(shape)}); "
                             f"target must be None or 0, got {target!r}")
        return lambda output: output
    if len(shape) > 2:
        if target is None and math.prod(shape[1:]) == 1:  # one entry per sample: that entry
            return lambda output: output.reshape(len(output))
        if not (isinstance(target, tuple) and len(target) == len(shape) - 1
                and all(isinstance(i, int) for i in target)):
            raise ValueError(
                f"the model returns outputs of shape {tuple(shape)}: target must be a tuple of "
                f"{len(shape) - 1} ints indexing one entry of each sample's output, or a "
                f"function of the output returning one score per sample; got {target!r}")
        for i, size in zip(target, shape[1:]):
            if not -size <= i < size:
                raise ValueError(f"target {target} is out of range for outputs of shape "
                                 f"{tuple(shape)}")
        return lambda output: output[(slice(None), *target)]
    raise ValueError(f"the model's outputs of shape {tuple(shape)} need no output score")


def neuron_of(model: nn.Module, neuron: tuple[Layer, Selector]) -> Neuron:
    """``neuron=(layer, index)`` checked against ``model``."""
    if not (isinstance(neuron, tuple) and len(neuron) == 2):
        raise TypeError("neuron must be (layer, index): a module or dotted name and an index "
                        f"over the layer's non-batch dimensions, got {neuron!r}")
    layer, index = neuron
    if not (callable(index) or isinstance(index, int) or (
            isinstance(index, Sequence) and all(isinstance(i, int) for i in index))):
        raise TypeError(f"neuron index must be an int, a tuple of ints or a function of the "
                        f"layer's output, got {index!r}")
    name, module = find_layer(model, layer, "neuron")
    return Neuron(name, module, index)


def _batched(value: Any, n: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == n


def _rows(value: torch.Tensor, rows: int) -> torch.Tensor:
    """``value`` (one sample, or ``rows`` already) as ``rows`` rows."""
    if len(value) == rows:
        return value
    if len(value) != 1:
        raise RuntimeError(f"cannot spread {len(value)} rows over {rows}")
    return value.expand(rows, *value.shape[1:])


def _spread(value: torch.Tensor, rows: int) -> torch.Tensor:
    """``value`` (one row per sample) for a batch of ``rows`` rows: each row its sample's, where
    the method named the samples of its rows (``workbench.sample_rows``), else as ``_rows``."""
    samples = current_rows()
    if samples is not None and len(samples) == rows and len(value) > 1:
        return value.index_select(0, samples.to(value.device))
    return _rows(value, rows)


@dataclass
class _View:
    """The call of the model for one group of samples: ``parts`` (the inputs), ``args`` (the
    forward arguments), and what replaces what."""

    model: nn.Module
    parts: tuple[torch.Tensor, ...]
    args: tuple[Any, ...]
    batched: tuple[bool, ...]  # which args are the samples' own (one row each)
    layer: tuple[str, nn.Module] | None
    layer_input: bool
    neuron: Neuron | None
    score: Callable[[torch.Tensor], torch.Tensor] | None = None  # of the output: (B,)

    def arguments(self, rows: int) -> tuple[Any, ...]:
        """The forward arguments for a call on ``rows`` rows: the samples' own ones spread."""
        return tuple(_spread(a, rows) if own else a for a, own in zip(self.args, self.batched))

    def call_arguments(self, variable: torch.Tensor) -> tuple[Any, ...]:
        rows = len(variable)
        if self.layer is not None:  # the inputs are constants; the variable enters at the layer
            return (*(_spread(p, rows) for p in self.parts), *self.arguments(rows))
        return (*unflatten(variable, self.parts), *self.arguments(rows))

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        """The model called with a variable runs as this view says, while the block runs."""
        current: list[torch.Tensor] = []
        captured: list[torch.Tensor] = []

        def enter(_module, args, kwargs):
            if not args or not isinstance(args[0], torch.Tensor):
                raise TypeError("the model was called without the explained variable")
            current[:] = [args[0]]
            return self.call_arguments(args[0]), kwargs

        handles = [self.model.register_forward_pre_hook(enter, with_kwargs=True)]
        try:
            if self.layer is not None:
                handles.append(self._replace_at_layer(current))
            if self.neuron is not None:
                handles += self._output_neuron(captured)
            elif self.score is not None:
                handles.append(self.model.register_forward_hook(
                    lambda _m, _args, output: _one_per_sample(self.score(output),
                                                              len(current[0]))))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _replace_at_layer(self, current: list[torch.Tensor]):
        name, module = self.layer

        def check(replaced: Any) -> torch.Tensor:
            if not isinstance(replaced, torch.Tensor):
                raise ValueError(f"layer {describe(name, module)}'s {self._where()} is "
                                 f"{type(replaced).__name__}, not a single tensor")
            if replaced.shape != current[0].shape:
                raise RuntimeError(f"layer {describe(name, module)}'s {self._where()} has shape "
                                   f"{tuple(replaced.shape)}, the variable "
                                   f"{tuple(current[0].shape)}")
            return current[0]

        if self.layer_input:
            return module.register_forward_pre_hook(
                lambda _m, args: (check(args[0] if args else None), *args[1:]))
        return module.register_forward_hook(lambda _m, _args, output: check(output))

    def _output_neuron(self, captured: list[torch.Tensor]):
        neuron = self.neuron

        def keep(_module, _args, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"neuron layer {describe(neuron.name, neuron.module)} returns "
                                 f"{type(output).__name__}, not a single tensor")
            captured[:] = [output]

        def score(_module, _args, _output):
            if not captured:
                raise ValueError(f"neuron layer {describe(neuron.name, neuron.module)} did not "
                                 "run in the forward pass")
            return neuron.select(captured[0]).reshape(-1, 1)

        return [neuron.module.register_forward_hook(keep),
                self.model.register_forward_hook(score)]

    def _where(self) -> str:
        return "input" if self.layer_input else "output"

    @torch.no_grad()
    def at_layer(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The layer's output (or input) when the model runs on ``parts``."""
        name, module = self.layer
        seen: list[Any] = []

        def keep_output(_m, _args, output):
            seen.append(output)

        def keep_input(_m, args):
            seen.append(args[0] if args else None)

        handle = (module.register_forward_pre_hook(keep_input) if self.layer_input
                  else module.register_forward_hook(keep_output))
        try:
            self.model(*parts, *self.arguments(len(parts[0])))
        finally:
            handle.remove()
        if len(seen) != 1:
            raise ValueError(f"layer {describe(name, module)} ran {len(seen)} times in one "
                             "forward pass; choose a module that runs exactly once")
        value = seen[0]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"layer {describe(name, module)}'s {self._where()} must be one "
                             f"floating-point tensor to be explained, got "
                             f"{getattr(value, 'dtype', type(value).__name__)}")
        return value.detach().clone()


def flatten(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each sample's features of every part, flattened and concatenated: ``(N, D)``; one part
    stays in its shape (so that shape options, such as occlusion windows, keep their
    meaning)."""
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p.reshape(len(p), -1) for p in parts], dim=1)


def unflatten(variable: torch.Tensor, parts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``variable`` (B, D) cut back into tensors of the parts' shapes, B rows each."""
    sizes = [math.prod(p.shape[1:]) for p in parts]
    pieces = variable.reshape(len(variable), -1).split(sizes, dim=1)
    return tuple(piece.reshape(len(variable), *p.shape[1:]) for piece, p in zip(pieces, parts))


def _check_parts(parts: tuple[Any, ...], integers_allowed: bool) -> int:
    if not parts:
        raise ValueError("inputs must be a tensor or a non-empty tuple of tensors")
    for i, part in enumerate(parts):
        where = "inputs" if len(parts) == 1 else f"inputs[{i}]"
        if not isinstance(part, torch.Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(part).__name__}")
        if integers_allowed and not part.is_floating_point():
            if part.dim() == 0:
                raise ValueError(f"{where} must have a batch dimension")
            continue
        try:
            check_inputs(part)
        except (TypeError, ValueError) as error:
            message = str(error).replace("inputs ", f"{where} ", 1)
            raise type(error)(message) from None
    sizes = {len(p) for p in parts}
    if len(sizes) != 1:
        raise ValueError(f"inputs must share their batch size, got {[len(p) for p in parts]}")
    return sizes.pop()


def _per_input(value: Any, parts: Sequence[torch.Tensor], name: str) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        if len(value) != len(parts):
            raise ValueError(f"{name} must have one entry per input ({len(parts)}), got "
                             f"{len(value)}")
        return value
    if len(parts) > 1 and isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a number or a tuple with one tensor per input when "
                        f"inputs is a tuple, got one tensor")
    return (value,) * len(parts)


def _flat_per_input(value: Any, parts: Sequence[torch.Tensor], name: str, n: int,
                    rows: slice) -> Any:
    """A per-input option value (baseline, baselines, feature mask) for the flattened
    variable: each entry broadcast to its input's sample shape, flattened, concatenated (one
    input: in its shape)."""
    if value is None or (not isinstance(value, (tuple, torch.Tensor))):
        return value  # a number (or None) applies to every feature as it is
    flat = []
    for entry, part in zip(_per_input(value, parts, name), parts):
        entry = torch.as_tensor(entry, device=part.device)
        if entry.dim() < part.dim():
            entry = entry.reshape(1, *entry.shape)
        if name != "baselines" and len(entry) == n:
            entry = entry[rows]
        try:
            entry = entry.expand(len(entry), *part.shape[1:])
        except RuntimeError:
            raise ValueError(f"{name} of shape {tuple(entry.shape)} does not broadcast to the "
                             f"input's shape {tuple(part.shape)}") from None
        flat.append(entry if len(parts) == 1 else entry.reshape(len(entry), -1))
    counts = {len(f) for f in flat} - {1}  # one row is shared by every sample
    if len(counts) > 1:
        raise ValueError(f"{name}: the entries have different numbers of rows "
                         f"{[len(f) for f in flat]}")
    rows_each = counts.pop() if counts else 1
    return torch.cat([f.expand(rows_each, *f.shape[1:]) for f in flat], dim=1)


def _baseline_inputs(value: Any, parts: Sequence[torch.Tensor], name: str, n: int,
                     rows: slice) -> tuple[torch.Tensor, ...]:
    """Input-space baseline ``value`` as input tensors (one row, or K rows for a
    ``baselines`` distribution) for the sample group ``parts``."""
    built = []
    for entry, part in zip(_per_input(value, parts, name), parts):
        if isinstance(entry, torch.Tensor):
            entry = entry.to(part.device)
            if entry.dim() < part.dim():
                entry = entry.reshape(1, *entry.shape)
            if name != "baselines" and len(entry) == n and len(part) != n:
                entry = entry[rows]
            entry = entry.expand(len(entry), *part.shape[1:]).to(part.dtype)
        else:
            if not part.is_floating_point() and float(entry) != int(entry):
                raise TypeError(f"{name} for integer inputs must be an integer (a token id), "
                                f"got {entry!r}")
            entry = torch.full((1, *part.shape[1:]), entry, dtype=part.dtype, device=part.device)
        built.append(entry)
    counts = {len(b) for b in built}
    if len(counts) != 1:
        raise ValueError(f"{name}: the entries have different numbers of rows "
                         f"{[len(b) for b in built]}")
    return tuple(built)


def _options_for(view: _View, values: dict[str, Any], method: Method, n: int,
                 rows: slice) -> dict[str, Any]:
    """The method's option values for the view's variable."""
    kinds = {option.name: option.kind for option in method.options}
    adapted = dict(values)
    for name, value in values.items():
        if view.layer is not None:
            if name in BASELINE_OPTIONS:
                start = _baseline_inputs(value, view.parts, name, n, rows)
                if name == "baseline" and any(view.batched) and len(start[0]) == 1:
                    # the layer's baseline for each sample with its own forward arguments
                    start = tuple(b.expand(len(p), *b.shape[1:]) for b, p in zip(start,
                                                                                 view.parts))
                adapted[name] = view.at_layer(start)
            elif kinds.get(name) == "mask" and isinstance(value, torch.Tensor) \
                    and len(value) == n and n > 1:
                adapted[name] = value[rows]
        elif name in BASELINE_OPTIONS or kinds.get(name) == "mask":
            adapted[name] = _flat_per_input(value, view.parts, name, n, rows)
    return adapted


def masks_differ_per_sample(method: Method, values: dict[str, Any], n: int) -> bool:
    """Whether a feature mask groups the features of the ``n`` samples differently (one row per
    sample, as Captum allows): each sample is then explained on its own. Not for methods whose
    result depends on the whole batch (feature permutation), which refuse such masks."""
    if method.name in BATCH_METHODS or n < 2:
        return False
    kinds = {option.name: option.kind for option in method.options}
    for name, value in values.items():
        if kinds.get(name) != "mask":
            continue
        for entry in value if isinstance(value, tuple) else (value,):
            if isinstance(entry, torch.Tensor) and entry.dim() >= 2 and len(entry) == n \
                    and not bool((entry == entry[:1]).all()):
                return True
    return False


def attribute_view(method: Method, model: nn.Module, inputs: torch.Tensor | tuple,
                   target: Target, values: dict[str, Any], *, forward_args: Any = None,
                   layer: Layer | None = None, attribute_to: str = "output",
                   neuron: tuple[Layer, Selector] | None = None,
                   score: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   ) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``method`` on the view of ``model`` that the arguments describe (module docstring);
    the attributions have the inputs' structure, or the layer's shape with ``layer``.
    ``score``: a function of the model's output giving the one score per sample explained
    (then ``target`` is None)."""
    if method.name in NOT_ON_VIEWS:
        raise ValueError(f"{method.name} cannot take several inputs, forward_args, layer or "
                         f"neuron: {NOT_ON_VIEWS[method.name]}")
    if attribute_to not in ("output", "input"):
        raise ValueError(f"attribute_to must be 'output' or 'input', got {attribute_to!r}")
    layer_input = attribute_to == "input"
    if layer_input and layer is None:
        raise ValueError("attribute_to='input' needs layer (the layer whose input is explained)")
    parts = inputs if isinstance(inputs, tuple) else (inputs,)
    n = _check_parts(parts, integers_allowed=layer is not None)
    args = () if forward_args is None else (
        forward_args if isinstance(forward_args, tuple) else (forward_args,))
    layer = find_layer(model, layer, "layer") if layer is not None else None
    unit = neuron_of(model, neuron) if neuron is not None else None
    if unit is not None and (target is not None or score is not None):
        raise ValueError("target must be None with neuron: the neuron is what is explained")
    targets = expand_target(target, n, parts[0].device)
    # rows spread over a batch by sample need the method to name them (Method.rows_by_sample)
    per_sample = (not method.rows_by_sample and (
        layer is not None or any(_batched(a, n) for a in args))) \
        or masks_differ_per_sample(method, values, n)
    groups = [slice(i, i + 1) for i in range(n)] if per_sample and n > 1 else [slice(None)]
    results = []
    for rows in bar(groups, desc=f"{method.name} per sample", disable=len(groups) < 8):
        view = _View(model, tuple(p[rows] for p in parts),
                     tuple(a[rows] if _batched(a, n) else a for a in args),
                     tuple(_batched(a, n) for a in args), layer, layer_input, unit, score)
        variable = view.at_layer(view.parts) if layer is not None else flatten(view.parts)
        group_target = (0 if unit is not None or score is not None
                        else None if targets is None else targets[rows])
        options = _options_for(view, values, method, n, rows)
        with view.hooks():
            results.append(method.run(model, variable, group_target, **options).detach())
    result = torch.cat(results)
    if layer is not None:
        return result
    pieces = unflatten(result, parts)
    return pieces if isinstance(inputs, tuple) else pieces[0]
