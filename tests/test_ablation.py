"""Feature ablation and permutation (workbench.methods.ablation): agreement with Captum 0.9's
FeatureAblation and FeaturePermutation, and their definitions on small models."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp, seeded_case

captum_attr = pytest.importorskip("captum.attr")
from captum.attr import FeatureAblation, FeaturePermutation  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_thread")]


def case(name: str, seed: int):
    vector = name == "tanh_mlp"
    model = mlp(nn.Tanh, seed=seed) if vector else cnn(nn.ReLU, nn.MaxPool2d, seed=seed)
    return seeded_case(model, seed, vector=vector)


def masks(name: str):
    """No mask (each feature alone), and a grouping of features."""
    if name == "tanh_mlp":
        return [None, torch.tensor([0, 0, 3, 3, 3, 1, 7, 7])]
    quadrants = torch.zeros(1, 8, 8, dtype=torch.long)
    quadrants[:, :4, 4:], quadrants[:, 4:, :4], quadrants[:, 4:, 4:] = 1, 2, 5
    channels = torch.arange(3).view(3, 1, 1).expand(3, 8, 8) * 10 + quadrants
    return [None, quadrants, channels]


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_maxpool_cnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_feature_ablation_matches_captum(name, seed):
    model, x, baseline, target = case(name, seed)
    for mask in masks(name):
        for base in (0.0, baseline):
            ours = wb.attribute(model, x, "feature_ablation", target=target, baseline=base,
                                feature_mask=mask, batch_size=7)
            captum_mask = None if mask is None else mask.expand_as(x[:1])
            theirs = FeatureAblation(model).attribute(x, baselines=base, target=target,
                                                      feature_mask=captum_mask)
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_feature_ablation_of_single_features_is_occlusion_with_a_one_feature_window():
    model, x, baseline, target = case("relu_maxpool_cnn", 0)
    torch.testing.assert_close(
        wb.attribute(model, x, "feature_ablation", target=target, baseline=baseline),
        wb.attribute(model, x, "occlusion", target=target, baseline=baseline),
        rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_maxpool_cnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_feature_permutation_matches_captum_with_the_same_seed(name, seed):
    # both draw one torch.randperm of the batch per group, in the groups' order, redrawn while
    # it is the identity: ours on a generator seeded with `seed`, Captum on the global one
    model, x, _, target = case(name, seed)
    for mask in masks(name):
        ours = wb.attribute(model, x, "feature_permutation", target=target, feature_mask=mask,
                            seed=seed)
        torch.manual_seed(seed)
        captum_mask = None if mask is None else mask.expand_as(x[:1])
        theirs = FeaturePermutation(model).attribute(x, target=target, feature_mask=captum_mask)
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_feature_permutation_swaps_a_group_between_two_inputs():
    # two inputs: the only non-identity permutation swaps them, so the value is exactly
    # f(x) - f(x with the group taken from the other input)
    model, x, _, target = case("tanh_mlp", 0)
    x, target = x[:2], target[:2]
    mask = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    ours = wb.attribute(model, x, "feature_permutation", target=target, feature_mask=mask,
                        seed=5)
    with torch.no_grad():
        score = model(x).gather(1, target[:, None])[:, 0]
        for group in range(3):
            swapped = torch.where(mask == group, x.flip(0), x)
            drop = score - model(swapped).gather(1, target[:, None])[:, 0]
            members = ours[:, mask == group]
            torch.testing.assert_close(members, drop[:, None].expand_as(members))


def test_a_feature_the_model_ignores_gets_nothing():
    torch.manual_seed(0)
    model = nn.Linear(6, 2).double()
    with torch.no_grad():
        model.weight[:, 3] = 0.0
    x = torch.randn(5, 6, dtype=torch.float64)
    for method in ("feature_ablation", "feature_permutation"):
        attr = wb.attribute(model, x, method, target=1, **({"seed": 0} if "perm" in method
                                                            else {"baseline": 0.3}))
        assert torch.equal(attr[:, 3], torch.zeros(5, dtype=torch.float64))
        assert (attr[:, [0, 1, 2, 4, 5]] != 0).any(dim=0).all()


def test_feature_permutation_needs_two_inputs():
    with pytest.raises(ValueError, match="feature_permutation.*at least 2 samples, got 1"):
        wb.attribute(mlp(nn.ReLU), torch.randn(1, 8), "feature_permutation", target=0)


def test_feature_masks_are_checked():
    with pytest.raises(ValueError, match="feature_mask.*does not broadcast"):
        wb.attribute(mlp(nn.ReLU), torch.randn(2, 8), "feature_ablation", target=0,
                     feature_mask=torch.zeros(3, dtype=torch.long))
