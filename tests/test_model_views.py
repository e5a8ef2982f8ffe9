"""Captum's call contract on the one engine (``workbench.model_views``): tuples of inputs,
forward arguments, layer and neuron attributions. Each case agrees with the Captum class that
defines it, or with an axiom (completeness at a layer)."""
from __future__ import annotations

import pytest
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    IntegratedGradients,
    LayerDeepLift,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    NeuronDeepLift,
    NeuronGradient,
    NeuronIntegratedGradients,
    Saliency,
)
from torch import nn

import workbench as wb
from conftest import cnn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Captum's requires_grad notes


class TwoInputs(nn.Module):
    """``head(a(x1) * scale + b(x2))``: two inputs and a per-sample forward argument."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(3, 8)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5))

    def forward(self, x1, x2, scale=1.0):
        return self.head(self.a(x1) * scale + self.b(x2))


class Text(nn.Module):
    """Token ids -> embedding -> conv1d -> ReLU -> mean over positions -> linear."""

    def __init__(self, vocabulary: int = 20, width: int = 6, classes: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.conv = nn.Conv1d(width, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, classes)

    def forward(self, tokens):
        hidden = self.relu(self.conv(self.embedding(tokens).transpose(1, 2)))
        return self.fc(hidden.mean(2))


@pytest.fixture
def two():
    torch.manual_seed(0)
    model = TwoInputs().double().eval()
    x1, x2 = torch.randn(6, 4, dtype=torch.double), torch.randn(6, 3, dtype=torch.double)
    scale = torch.rand(6, 1, dtype=torch.double) + 0.5
    return model, (x1, x2), scale


@pytest.fixture
def text():
    torch.manual_seed(1)
    return Text().double().eval(), torch.randint(1, 20, (4, 7))


def _close(ours, theirs, atol=1e-9):
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b.to(a.dtype), atol=atol, rtol=0)


def _no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


# --- several inputs and forward arguments --------------------------------------------------

def test_tuple_inputs_and_a_per_sample_forward_argument_match_captum(two):
    model, inputs, scale = two
    ours = wb.attribute(model, inputs, "integrated_gradients", target=2, forward_args=(scale,))
    theirs = IntegratedGradients(model).attribute(inputs, target=2,
                                                  additional_forward_args=(scale,))
    assert isinstance(ours, tuple) and [a.shape for a in ours] == [x.shape for x in inputs]
    _close(ours, theirs)
    _close(wb.attribute(model, inputs, "deeplift_rescale", target=2, forward_args=(scale,)),
           DeepLift(model).attribute(inputs, target=2, additional_forward_args=(scale,)))


def test_a_forward_argument_without_a_batch_dimension_is_passed_as_it_is(two):
    model, inputs, _ = two
    ours = wb.attribute(model, inputs, "gradient", target=[0, 1, 2, 3, 4, 0], forward_args=2.0)
    theirs = Saliency(model).attribute(inputs, target=[0, 1, 2, 3, 4, 0],
                                       additional_forward_args=2.0, abs=False)
    _close(ours, theirs, atol=0)


def test_tuple_baselines_and_feature_masks_match_captum(two):
    model, inputs, scale = two
    masks = (torch.tensor([[0, 0, 1, 1]]), torch.tensor([[1, 2, 2]]))  # label 1 spans both
    baselines = (torch.full((1, 4), 0.5, dtype=torch.double), 0.25)
    ours = wb.attribute(model, inputs, "feature_ablation", target=1, forward_args=(scale,),
                        feature_mask=masks, baseline=baselines)
    theirs = FeatureAblation(model).attribute(inputs, target=1, feature_mask=masks,
                                              baselines=baselines,
                                              additional_forward_args=(scale,))
    _close(ours, theirs)


def test_feature_masks_grouping_each_sample_differently_match_captum(two):
    """A mask row per sample (and, for tuples, a one-row mask shared next to them): each
    sample is ablated with its own grouping, as Captum does."""
    model, (x1, x2), scale = two
    rows = torch.randint(0, 3, (6, 4))
    ours = wb.attribute(model, x1, "feature_ablation", target=1, forward_args=(x2, scale),
                        feature_mask=rows)
    theirs = FeatureAblation(model).attribute(x1, target=1, feature_mask=rows,
                                              additional_forward_args=(x2, scale))
    _close(ours, theirs)
    masks = (rows, torch.tensor([[3, 4, 4]]))
    _close(wb.attribute(model, (x1, x2), "feature_ablation", target=1, forward_args=(scale,),
                        feature_mask=masks),
           FeatureAblation(model).attribute((x1, x2), target=1, feature_mask=masks,
                                            additional_forward_args=(scale,)))
    image_net, images = cnn(), torch.randn(2, 3, 8, 8)
    per_sample = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)]).long()
    per_sample[0, :, :4] = 1
    _close(wb.attribute(image_net, images, "feature_ablation", target=0,
                        feature_mask=per_sample),
           FeatureAblation(image_net).attribute(images, target=0, feature_mask=per_sample),
           atol=1e-6)


def test_one_input_keeps_its_shape_for_shape_options():
    """With forward arguments, occlusion windows are over the input's own dimensions."""
    from captum.attr import Occlusion
    model, x = cnn(), torch.randn(2, 3, 8, 8)

    class Added(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, shift):
            return self.net(x + shift)

    added, shift = Added(), torch.randn(2, 3, 8, 8)
    ours = wb.attribute(added, x, "occlusion", target=1, window=(3, 2, 2), stride=(3, 1, 2),
                        forward_args=shift)
    theirs = Occlusion(added).attribute(x, sliding_window_shapes=(3, 2, 2), strides=(3, 1, 2),
                                        target=1, additional_forward_args=shift)
    _close(ours, theirs, atol=1e-6)


def test_tuple_inputs_with_a_baseline_per_sample_satisfy_completeness(two):
    model, (x1, x2), _ = two
    model.head[0] = model.head[2] = nn.Tanh()  # smooth: the quadrature converges fast
    b1, b2 = torch.randn_like(x1), torch.randn_like(x2)
    ours = wb.attribute(model, (x1, x2), "integrated_gradients", target=3,
                        baseline=(b1, b2), steps=200)
    delta = model(x1, x2)[:, 3] - model(b1, b2)[:, 3]
    torch.testing.assert_close(ours[0].sum(1) + ours[1].sum(1), delta.detach(), atol=1e-6,
                               rtol=0)


# --- layers --------------------------------------------------------------------------------

def test_layer_integrated_gradients_on_an_embedding_of_token_ids_match_captum(text):
    model, tokens = text
    ours = wb.attribute(model, tokens, "integrated_gradients", target=1, layer="embedding",
                        baseline=0)
    theirs = LayerIntegratedGradients(model, model.embedding).attribute(
        tokens, baselines=torch.zeros_like(tokens), target=1)
    assert ours.shape == (4, 7, 6)
    _close(ours, theirs)


class MaskedText(Text):
    """``Text`` whose positions with token 0 (padding) are left out after the convolution:
    the token ids matter beyond the embedding."""

    def forward(self, tokens):
        hidden = self.relu(self.conv(self.embedding(tokens).transpose(1, 2)))
        return self.fc((hidden * (tokens != 0)[:, None]).mean(2))


@pytest.mark.parametrize("batch_size", [5, 256])
def test_layer_views_explain_all_samples_at_once_with_each_rows_own_inputs(batch_size):
    """Integrated gradients at a layer run on batches that mix samples and path points (passes
    of 5 rows cut across both); every row gets its own sample's token ids and forward argument,
    as Captum's LayerIntegratedGradients gives them."""
    torch.manual_seed(2)
    model, tokens = MaskedText().double().eval(), torch.randint(0, 20, (4, 7))
    tokens[:, -2:] = 0
    ours = wb.attribute(model, tokens, "integrated_gradients", target=[0, 1, 2, 1],
                        layer="embedding", baseline=0, steps=12, batch_size=batch_size)
    theirs = LayerIntegratedGradients(model, model.embedding).attribute(
        tokens, baselines=torch.zeros_like(tokens), target=[0, 1, 2, 1], n_steps=12)
    _close(ours, theirs)

    torch.manual_seed(0)
    two, (x1, x2) = TwoInputs().double().eval(), (torch.randn(6, 4), torch.randn(6, 3))
    x1, x2 = x1.double(), x2.double()
    scale = torch.rand(6, 1, dtype=torch.double) + 0.5
    _close(wb.attribute(two, (x1, x2), "integrated_gradients", target=3, layer="a",
                        forward_args=(scale,), steps=10, batch_size=batch_size),
           LayerIntegratedGradients(two, two.a).attribute(
               (x1, x2), target=3, additional_forward_args=(scale,), n_steps=10),
           atol=1e-7)  # (Captum's path in a float32 step: relative 1.5e-8 apart)
    # noise-free SmoothGrad is the layer's gradient, each row with its own scale
    _close(wb.attribute(two, (x1, x2), "smoothgrad", target=3, layer="a", forward_args=scale,
                        noise=0.0, n_samples=3, batch_size=batch_size),
           LayerGradientXActivation(two, two.a, multiply_by_inputs=False).attribute(
               (x1, x2), target=3, additional_forward_args=(scale,)))


def test_layer_integrated_gradients_are_complete_in_the_layers_space(text):
    """Sum over the embedding's features = f(x) - f(baseline tokens), up to the quadrature."""
    model, tokens = text
    model.relu = nn.Tanh()  # smooth: the quadrature converges fast
    ours = wb.attribute(model, tokens, "integrated_gradients", target=2, layer="embedding",
                        baseline=3, steps=100)
    delta = model(tokens)[:, 2] - model(torch.full_like(tokens, 3))[:, 2]
    torch.testing.assert_close(ours.sum((1, 2)), delta.detach(), atol=1e-5, rtol=0)


def test_layer_deeplift_and_gradient_x_activation_match_captum(text):
    model, tokens = text
    _close(wb.attribute(model, tokens, "deeplift_rescale", target=0, layer="conv",
                        baseline=0),
           LayerDeepLift(model, model.conv).attribute(tokens, baselines=torch.zeros_like(tokens),
                                                      target=0))
    for attribute_to in ("output", "input"):
        _close(wb.attribute(model, tokens, "gradient_x_input", target=0, layer=model.relu,
                            attribute_to=attribute_to),
               LayerGradientXActivation(model, model.relu).attribute(
                   tokens, target=0, attribute_to_layer_input=attribute_to == "input"))


def test_a_conv_layer_of_an_image_net_matches_captum():
    model = cnn()
    x = torch.randn(5, 3, 8, 8)
    ours = wb.attribute(model, x, "gradient_x_input", target=2, layer="3")
    theirs = LayerGradientXActivation(model, model[3]).attribute(x, target=2)
    assert ours.shape == (5, 8, 4, 4)
    _close(ours, theirs, atol=1e-5)


def test_grad_cams_layer_is_its_own_option_and_the_earlier_spelling_still_works():
    """``layer=`` is Grad-CAM's own layer (Captum's LayerGradCam takes it the same way);
    ``to_layer=``/``layer_input=`` (the earlier spelling) give the same result with a warning."""
    model = cnn()
    x = torch.randn(4, 3, 8, 8)
    at_first = wb.attribute(model, x, "grad_cam", target=1, layer="0")
    at_last = wb.attribute(model, x, "grad_cam", target=1)
    assert not torch.allclose(at_first, at_last)
    _close(at_first, wb.attribute(model, x, "grad_cam", target=1, layer=model[0]))
    with pytest.warns(FutureWarning, match="is now"):
        earlier = wb.attribute(model, x, "gradient_x_input", target=2, to_layer="3",
                               layer_input=True)
    _close(earlier, wb.attribute(model, x, "gradient_x_input", target=2, layer="3",
                                 attribute_to="input"))
    with pytest.raises(TypeError, match="not both"), pytest.warns(FutureWarning):
        wb.attribute(model, x, "gradient", target=2, to_layer="3", layer="3")


# --- neurons -------------------------------------------------------------------------------

def test_neuron_gradient_integrated_gradients_and_deeplift_match_captum(two):
    model, inputs, scale = two
    for ours_name, captum_class, extra in (("gradient", NeuronGradient, {}),
                                           ("integrated_gradients", NeuronIntegratedGradients,
                                            {})):
        ours = wb.attribute(model, inputs, ours_name, forward_args=(scale,),
                            neuron=("head.1", 4))
        theirs = captum_class(model, model.head[1]).attribute(
            inputs, neuron_selector=4, additional_forward_args=(scale,), **extra)
        _close(ours, theirs)
    ours = wb.attribute(model, inputs, "deeplift_rescale", forward_args=(scale,),
                        neuron=(model.head[2], 1))
    theirs = NeuronDeepLift(model, model.head[2]).attribute(
        inputs, neuron_selector=1, additional_forward_args=(scale,))
    _close(ours, theirs)


def test_a_conv_neuron_by_index_and_by_function():
    model = cnn()
    x = torch.randn(3, 3, 8, 8)
    ours = wb.attribute(model, x, "gradient", neuron=("0", (2, 3, 4)))
    theirs = NeuronGradient(model, model[0]).attribute(x, neuron_selector=(2, 3, 4))
    _close(ours, theirs, atol=1e-6)
    pooled = wb.attribute(model, x, "gradient", neuron=("0", lambda out: out[:, 2].sum((1, 2))))
    assert not torch.allclose(pooled, ours)
    # the sum of a channel's units is the sum of their gradients (linearity of the gradient)
    per_unit = sum(wb.attribute(model, x, "gradient", neuron=("0", (2, i, j)))
                   for i in range(8) for j in range(8))
    torch.testing.assert_close(pooled, per_unit, atol=1e-5, rtol=1e-4)


# --- refusals and cleanliness --------------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda m, x, t: wb.attribute(m, t, "gradient", target=0), TypeError, "layer=<the embedding>"),
    (lambda m, x, t: wb.attribute(m, t.double(), "grad_cam", neuron=("conv", 1)), ValueError,
     "grad_cam cannot"),
    (lambda m, x, t: wb.attribute(m, t, "grad_cam", layer="conv"), TypeError,
     "grad_cam takes floating-point inputs"),
    (lambda m, x, t: wb.attribute(m, t.double(), "grad_cam", layer="conv", attribute_to="input"),
     ValueError, "grad_cam explains its layer's output"),
    (lambda m, x, t: wb.attribute(m, t, "gradient", layer="conv", attribute_to="in"),
     ValueError, "attribute_to must be 'output' or 'input'"),
    (lambda m, x, t: wb.attribute(m, t, "gradient", target=0, neuron=("conv", (1, 1)),
                                  layer="embedding"),
     ValueError, "target must be None with neuron"),
    (lambda m, x, t: wb.attribute(m, t, "gradient", neuron=("conv", (9, 1)),
                                  layer="embedding"),
     ValueError, r"neuron index \(9, 1\) does not fit"),
    (lambda m, x, t: wb.attribute(m, t, "gradient", neuron=("conv", 1.5), layer="embedding"),
     TypeError, "neuron index"),
    (lambda m, x, t: wb.attribute(m, t, "gradient", layer="nope"), ValueError, "layer"),
    (lambda m, x, t: wb.attribute(m, t.double(), "gradient", attribute_to="input"), ValueError,
     "attribute_to='input' needs layer"),
    (lambda m, x, t: wb.attribute(m, (t.double(), t[:2].double()), "gradient"), ValueError,
     "share their batch size"),
    (lambda m, x, t: wb.attribute(m, (t.double(), t.double()), "integrated_gradients",
                                  baseline=(0.0,)), ValueError, "one entry per input"),
    (lambda m, x, t: wb.attribute(m, t, "integrated_gradients", layer="embedding",
                                  baseline=0.5), TypeError, "token id"),
])
def test_bad_calls_name_the_argument(text, call, error, message):
    model, tokens = text
    with pytest.raises(error, match=message):
        call(model, None, tokens)
    assert _no_hooks(model)


def test_hooks_are_removed_and_inputs_kept_when_the_model_raises(two):
    model, inputs, _ = two
    before = [x.clone() for x in inputs]
    with pytest.raises(RuntimeError):
        wb.attribute(model, inputs, "gradient", target=0,
                     forward_args=(torch.ones(6, 2, dtype=torch.double),))  # wrong shape
    assert _no_hooks(model)
    for x, kept in zip(inputs, before):
        assert torch.equal(x, kept)
    wb.attribute(model, inputs, "gradient", target=0, layer="head.0", forward_args=2.0)
    assert _no_hooks(model)


# --- targets beyond a class per sample -----------------------------------------------------

def _regression():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1), nn.Flatten(0)).double()


def _grid_output():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Unflatten(1, (3, 4))).double()


def test_a_regression_output_is_explained_as_captum_does():
    model, x = _regression(), torch.randn(5, 4, dtype=torch.double)
    assert model(x).shape == (5,)
    _close(wb.attribute(model, x, "integrated_gradients"),
           IntegratedGradients(model).attribute(x))
    _close(wb.attribute(model, x, "deeplift_rescale", target=0),
           DeepLift(model).attribute(x))


def test_a_tuple_target_indexes_higher_dimensional_outputs_as_captum_does():
    model, x = _grid_output(), torch.randn(5, 4, dtype=torch.double)
    _close(wb.attribute(model, x, "gradient", target=(1, 2)),
           Saliency(model).attribute(x, target=(1, 2), abs=False), atol=0)


def test_a_tuple_target_of_any_length_indexes_a_larger_output_for_path_methods():
    """Integrated gradients and DeepLIFT read the target's length before running the model: a
    tuple target on a higher-dimensional output is an index, whatever the batch size."""
    model, x = _grid_output(), torch.randn(5, 4, dtype=torch.double)
    _close(wb.attribute(model, x, "integrated_gradients", target=(1, 2)),
           IntegratedGradients(model).attribute(x, target=(1, 2)))
    _close(wb.attribute(model, x[:2], "deeplift_rescale", target=(2, 3)),
           DeepLift(model).attribute(x[:2], target=(2, 3)))


def test_a_target_function_is_the_score_explained():
    """The gradient is linear in the score: a function summing entries gives the sum of their
    gradients."""
    model, x = _grid_output(), torch.randn(5, 4, dtype=torch.double)
    summed = wb.attribute(model, x, "gradient", target=lambda out: out[:, 0].sum(1))
    parts = sum(wb.attribute(model, x, "gradient", target=(0, j)) for j in range(4))
    _close(summed, parts, atol=1e-12)
    two_class = cnn()
    images = torch.randn(3, 3, 8, 8)
    _close(wb.attribute(two_class, images, "gradient", target=lambda out: out[:, 1]),
           wb.attribute(two_class, images, "gradient", target=1), atol=1e-7)


def test_a_single_entry_per_sample_is_explained_without_a_target():
    """Outputs of shape (N, 1, ..., 1) hold one score per sample: target None explains it, as
    Captum does, and equals the tuple index (0, 0, 0)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 1), nn.Tanh(), nn.Unflatten(1, (1, 1, 1))).double()
    x = torch.randn(5, 4, dtype=torch.double)
    assert model(x).shape == (5, 1, 1, 1)
    ours = wb.attribute(model, x, "integrated_gradients")
    _close(ours, wb.attribute(model, x, "integrated_gradients", target=(0, 0, 0)), atol=0)
    _close(ours, IntegratedGradients(model).attribute(x))


@pytest.mark.parametrize("model, target, error, message", [
    (_regression(), 3, ValueError, "one score per sample.*None or 0"),
    (_grid_output(), 2, ValueError, "tuple of 2 ints"),
    (_grid_output(), None, ValueError, "tuple of 2 ints"),
    (_grid_output(), (3, 0), ValueError, "out of range"),
    (_grid_output(), lambda out: out, ValueError, "one value per sample"),
])
def test_bad_targets_for_other_outputs_say_what_is_accepted(model, target, error, message):
    with pytest.raises(error, match=message):
        wb.attribute(model, torch.randn(5, 4, dtype=torch.double), "gradient", target=target)
    assert _no_hooks(model)
