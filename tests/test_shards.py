"""Data-parallel statistics on a Dask LocalCluster (2 worker processes): sums over shards equal
the one-process pass to float64 round-off; per-input results come back in order."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import workbench as wb
from workbench import metrics
from workbench.patterns import _combine_statistics, _pattern_statistics, gather_moments
from workbench.shards import Shards, map_shards, reduce_shards

pytest.importorskip("distributed")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def net_and_data():
    model = _net()
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    generator = torch.Generator().manual_seed(1)
    return model, torch.randn(90, 1, 8, 8, generator=generator)


def test_shards_are_checked():
    with pytest.raises(ValueError, match="at least one"):
        Shards(())
    with pytest.raises(TypeError, match="callable"):
        Shards((torch.zeros(2),))
    with pytest.raises(ValueError, match="between 1 and the 4 samples"):
        Shards.split(torch.zeros(4, 2), 5)
    with pytest.raises(TypeError, match="needs a tensor"):
        Shards.split([1, 2], 1)
    shards = Shards.split(torch.arange(10.0)[:, None], 3)
    assert len(shards) == 3
    assert torch.equal(torch.cat([piece() for piece in shards.pieces]),
                       torch.arange(10.0)[:, None])


@pytest.mark.slow
def test_sharded_pattern_moments_equal_the_one_process_pass(net_and_data, dask_client):
    model, x = net_and_data
    (single,) = gather_moments(model, x, batch_size=32, progress=False)
    sharded, _ = reduce_shards(functools.partial(_pattern_statistics, model, 16, "moments",
                                                 progress=False),
                               Shards.split(x, 4), combine=_combine_statistics,
                               scheduler=dask_client, progress=False)
    assert sharded.keys() == single.keys()
    for layer in single:
        assert sharded[layer].count == single[layer].count == len(x) * (64 if layer == "0" else 1)
        for name in ("sum_x", "sum_xy", "sum_yy", "count_pos", "sum_xy_pos"):
            torch.testing.assert_close(getattr(sharded[layer], name),
                                       getattr(single[layer], name), rtol=1e-12, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["a", "a+-"])
def test_sharded_fit_patterns_equals_the_one_process_fit(net_and_data, dask_client, estimator):
    model, x = net_and_data
    single = wb.fit_patterns(model, x, estimator, batch_size=32, progress=False)
    sharded = wb.fit_patterns(model, Shards.split(x, 3), estimator, batch_size=32,
                              progress=False, scheduler=dask_client)
    assert sharded.layers.keys() == single.layers.keys() == {"0", "5", "7"}
    for layer, pattern in single.layers.items():
        torch.testing.assert_close(sharded.layers[layer].positive, pattern.positive,
                                   rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(sharded.layers[layer].negative, pattern.negative,
                                   rtol=1e-5, atol=1e-7)


def _degradation_of_shard(model, inputs):
    attributions = wb.attribute(model, inputs, "gradient_x_input", target=0)
    return metrics.degradation(model, inputs, attributions, patch=2, target=0).curve


@pytest.mark.slow
def test_metrics_mapped_over_shards_come_back_in_order(net_and_data, dask_client, tmp_path):
    model, x = net_and_data
    x = x[:20]
    expected = _degradation_of_shard(model, x)
    paths = []
    for i, part in enumerate(x.tensor_split(3)):
        paths.append(tmp_path / f"shard{i}.pt")
        torch.save(part, paths[-1])
    mapped = map_shards(functools.partial(_degradation_of_shard, model),
                        Shards.from_files(paths), scheduler=dask_client, progress=False)
    torch.testing.assert_close(mapped, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("spatial", ["positions", "pooled"])
def test_sharded_activation_statistics_and_bases_equal_one_pass(net_and_data, dask_client,
                                                                spatial):
    model, x = net_and_data
    layers = ["2", "6"]  # a conv ReLU (per position or pooled) and a dense ReLU
    single = wb.activations(model, x, layers, spatial=spatial, batch_size=32, progress=False)
    sharded = wb.activations(model, Shards.split(x, 4), layers, spatial=spatial, batch_size=16,
                             progress=False, scheduler=dask_client)
    for layer in layers:
        assert sharded[layer].count == single[layer].count
        torch.testing.assert_close(sharded[layer].mean, single[layer].mean, rtol=1e-12,
                                   atol=1e-12)
        torch.testing.assert_close(sharded[layer].covariance, single[layer].covariance,
                                   rtol=1e-10, atol=1e-12)
    basis = wb.fit_basis(model, Shards.split(x, 3), "6", kind="pca", progress=False,
                         scheduler=dask_client)
    reference = wb.fit_basis(model, x, "6", kind="pca", progress=False)
    torch.testing.assert_close(basis.variances, reference.variances, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_a_sanity_check_table_over_shards_equals_the_one_process_table(dask_client):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 8 * 8, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    check = functools.partial(wb.sanity_check, model, methods=["gradient", "guided_backprop"],
                              target=0, progress=False)
    single = check(x)
    sharded = map_shards(check, Shards.split(x, 2), scheduler=dask_client, progress=False)
    assert sorted(sharded["shard"].unique()) == [0, 1] and sharded["sample"].max() == 5
    key = ["method", "stage_index", "sample", "metric", "reference"]
    left = single.sort_values(key).reset_index(drop=True)
    right = sharded.drop(columns="shard").sort_values(key).reset_index(drop=True)
    assert left[key].equals(right[key])
    torch.testing.assert_close(torch.tensor(right["value"].to_numpy()),
                               torch.tensor(left["value"].to_numpy()), equal_nan=True)


def test_adding_shard_statistics_needs_the_same_layers_in_both():
    from workbench.shards import add_by_key

    total = add_by_key({"a": torch.tensor(1.0), "b": 2}, {"a": torch.tensor(3.0), "b": 5})
    assert total == {"a": torch.tensor(4.0), "b": 7}
    with pytest.raises(ValueError, match=r"shards ran different layers: \['a'\] vs \['b'\]"):
        add_by_key({"a": 1}, {"b": 1})
