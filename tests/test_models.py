"""workbench.models: builders, training, the cache of trained models, local torchvision weights."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from workbench import data, models


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def digits() -> data.ImageData:
    return data.digits()


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- builders -----------------------------------------------------------------------------

@pytest.mark.parametrize("activation, kind", [("relu", nn.ReLU), ("tanh", nn.Tanh)])
def test_builders_shapes_and_activations(activation, kind):
    built = {
        "mlp": (models.mlp(3 * 16 * 16, 5, hidden=(32, 16), activation=activation), 2),
        "cnn": (models.cnn(3, 5, 16, activation=activation), 3),
        "vgg_style": (models.vgg_style(3, 5, 16, widths=(8, 16), activation=activation), 5),
    }
    x = torch.randn(2, 3, 16, 16)
    for name, (model, activations) in built.items():
        assert model(x).shape == (2, 5), name
        found = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.Tanh))]
        assert len(found) == activations and all(isinstance(m, kind) for m in found), name


def test_cnn_and_vgg_are_named_features_then_classifier():
    cnn = models.cnn(1, 10, 8)
    assert [name for name, _ in cnn.named_children()] == ["features", "flatten", "classifier"]
    assert [name for name, _ in cnn.features.named_children()] == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    vgg = models.vgg_style(1, 10, 32, widths=(8, 16, 32))
    convolutions = [m for m in vgg.features.modules() if isinstance(m, nn.Conv2d)]
    assert len(convolutions) == 6 and all(c.kernel_size == (3, 3) for c in convolutions)
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.features) == 3
    assert "conv3_2" in dict(vgg.features.named_children())
    assert models.mlp(64, 10)(torch.randn(4, 64)).shape == (4, 10)  # flat inputs work too

#: state-dict keys and shapes of the builders as cached weights hold them (written down from
#: the builders before ``cnn`` and ``vgg_style`` shared one body); a cached file loads only if
#: they stay the same
CNN_1_10_8 = [
    ("features.conv1.weight", (32, 1, 3, 3)), ("features.conv1.bias", (32,)),
    ("features.conv2.weight", (64, 32, 3, 3)), ("features.conv2.bias", (64,)),
    ("classifier.linear1.weight", (128, 256)), ("classifier.linear1.bias", (128,)),
    ("classifier.linear2.weight", (10, 128)), ("classifier.linear2.bias", (10,)),
]
VGG_3_4_16_WIDTHS_5_6_HIDDEN_9 = [
    ("features.conv1_1.weight", (5, 3, 3, 3)), ("features.conv1_1.bias", (5,)),
    ("features.conv1_2.weight", (5, 5, 3, 3)), ("features.conv1_2.bias", (5,)),
    ("features.conv2_1.weight", (6, 5, 3, 3)), ("features.conv2_1.bias", (6,)),
    ("features.conv2_2.weight", (6, 6, 3, 3)), ("features.conv2_2.bias", (6,)),
    ("classifier.linear1.weight", (9, 96)), ("classifier.linear1.bias", (9,)),
    ("classifier.linear2.weight", (4, 9)), ("classifier.linear2.bias", (4,)),
]


@pytest.mark.parametrize("model, expected", [
    (lambda: models.cnn(1, 10, 8), CNN_1_10_8),
    (lambda: models.vgg_style(3, 4, 16, widths=(5, 6), activation="tanh", hidden=9),
     VGG_3_4_16_WIDTHS_5_6_HIDDEN_9),
])
def test_builders_keep_the_state_dict_keys_of_cached_weights(model, expected):
    assert [(k, tuple(v.shape)) for k, v in model().state_dict().items()] == expected


def test_builder_signatures_are_the_cache_settings():
    """The cache key hashes the builder's parameters and defaults: they must not change."""
    assert models.settings("cnn", "digits")["model"] == {
        "activation": "relu", "channels": [32, 64], "hidden": 128}
    assert models.settings("vgg_style", "digits")["model"] == {
        "widths": [16, 32, 64], "activation": "relu", "hidden": 128}



@pytest.mark.parametrize("build, arguments, word", [
    (models.cnn, dict(in_channels=1, classes=10, size=8, activation="sigmoid"), "activation"),
    (models.mlp, dict(in_features=64, classes=10, activation="gelu"), "activation"),
    (models.cnn, dict(in_channels=1, classes=10, size=2), "size"),
    (models.vgg_style, dict(in_channels=1, classes=10, size=4), "size"),
    (models.mlp, dict(in_features=0, classes=10), "in_features"),
])
def test_builder_errors_name_the_argument(build, arguments, word):
    with pytest.raises(ValueError, match=word):
        build(**arguments)


def test_builder_seed_fixes_the_initialisation_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    first, again = models.cnn(1, 10, 8, seed=3), models.cnn(1, 10, 8, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert _same_weights(first, again)
    assert not _same_weights(first, models.cnn(1, 10, 8, seed=4))


# --- training -----------------------------------------------------------------------------

def test_training_is_deterministic_under_the_seed(digits):
    runs = []
    for seed in (0, 0, 1):
        model = models.mlp(64, 10, hidden=(32,), seed=0)
        runs.append((model, models.train(model, digits, epochs=2, seed=seed, progress=False)))
    (first, accuracy_first), (again, accuracy_again), (other, _) = runs
    assert _same_weights(first, again) and accuracy_first == accuracy_again
    assert not _same_weights(first, other)
    assert not first.training
    assert 0.2 < accuracy_first <= 1  # better than chance (0.1) after two epochs


def test_training_leaves_the_thread_setting_alone(digits):
    threads = torch.get_num_threads()
    models.train(models.mlp(64, 10, hidden=(8,)), digits, epochs=1, progress=False)
    assert torch.get_num_threads() == threads


def test_accuracy_counts_correct_arg_max():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert models.accuracy(model, x, torch.tensor([0, 1, 1, 1]), batch_size=3) == 0.75


def test_train_rejects_bad_arguments(digits):
    with pytest.raises(ValueError, match="epochs"):
        models.train(models.mlp(64, 10), digits, epochs=0)
    empty = data.digits(test_fraction=0.0)
    with pytest.raises(ValueError, match="test"):
        models.train(models.mlp(64, 10), empty, epochs=1)


@pytest.mark.slow
def test_default_digits_cnn_reaches_95_percent(cache, digits):
    model, info = models.zoo("digits_cnn_relu", progress=False)
    assert not info["from_cache"]
    assert info["accuracy"] >= 0.95
    assert models.accuracy(model, digits.x_test, digits.y_test) == info["accuracy"]


# --- cache --------------------------------------------------------------------------------

TINY = dict(architecture="mlp", dataset="digits", hidden=(16,), epochs=1)


def test_cache_round_trip(cache, monkeypatch):
    model, info = models.trained(**TINY, progress=False)
    assert not info["from_cache"] and Path(info["path"]).parent == cache
    assert sorted(p.name for p in cache.iterdir()) == [Path(info["path"]).name]  # no temp files
    assert Path(info["path"]).stat().st_mode & 0o777 == 0o644
    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(models, "_train", no_training)
    loaded, loaded_info = models.trained(**TINY, progress=False)
    assert loaded_info["from_cache"] and loaded_info["path"] == info["path"]
    assert loaded_info["accuracy"] == info["accuracy"] and not loaded.training
    assert _same_weights(model, loaded)
    assert loaded_info["arguments"] == {"in_features": 64, "classes": 10, "hidden": [16],
                                        "activation": "relu"}
    assert loaded_info["settings"]["training"] == {"epochs": 1, "lr": 1e-3, "batch_size": 64}


def test_unreadable_cache_file_is_named(cache):
    _, info = models.trained(**TINY, progress=False)
    Path(info["path"]).write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=re.escape(info["path"])):
        models.trained(**TINY, progress=False)


def test_cache_key_follows_every_setting():
    key = models.cache_key(models.settings(**TINY))
    assert key == models.cache_key(models.settings(**TINY, lr=1e-3, activation="relu"))
    changed = [dict(TINY, epochs=2), dict(TINY, seed=1), dict(TINY, hidden=(17,)),
               dict(TINY, size=16), dict(TINY, dataset="shapes"),
               dict(architecture="cnn", dataset="digits", epochs=1)]
    keys = {models.cache_key(models.settings(**c)) for c in changed}
    assert len(keys) == len(changed) and key not in keys


def test_settings_reject_unknown_names():
    with pytest.raises(TypeError, match="widths"):
        models.settings("mlp", "digits", widths=(8,))
    with pytest.raises(ValueError, match="architecture must be one of"):
        models.settings("resnet", "digits")
    with pytest.raises(ValueError, match="dataset must be one of"):
        models.settings("mlp", "imagenet")
    with pytest.raises(ValueError, match="name must be one of .*digits_cnn_relu"):
        models.zoo("nope")


def test_failed_write_leaves_no_files(cache, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        models.trained(**TINY, progress=False)
    assert list(cache.iterdir()) == []


def test_cache_folder_defaults_to_data_cache(monkeypatch):
    monkeypatch.delenv("WORKBENCH_CACHE", raising=False)
    assert models.cache_dir() == Path(models.__file__).resolve().parents[1] / "data" / "cache"


def test_zoo_entries_are_valid_settings():
    for name, arguments in models.ZOO.items():
        config = models.settings(**arguments)
        assert config["architecture"] in models.ARCHITECTURES, name


# --- torchvision classifiers from local weights -------------------------------------------

@pytest.mark.parametrize("loader, factory, file_name", [
    (models.alexnet, torchvision.models.alexnet, "alexnet-owt-7be5be79.pth"),
    (models.vgg16, torchvision.models.vgg16, "vgg16-397923af.pth"),
])
def test_torchvision_models_load_only_local_weights(tmp_path, monkeypatch, loader, factory,
                                                    file_name):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / file_name
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        loader()
    with pytest.raises(FileNotFoundError, match="weights_path"):
        loader(tmp_path / "absent.pth")

    torch.manual_seed(0)
    reference = factory(weights=None).eval()
    expected.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), expected)
    x = torch.randn(1, 3, 64, 64)
    for model in (loader(), loader(expected)):
        assert not model.training and _same_weights(model, reference)
        torch.testing.assert_close(model(x), reference(x))


def test_vit_builder_checks_its_arguments_and_classifies_rgb_images():
    model = models.vit(3, 5, 16, patch=4, depth=1, heads=2, width=8, mlp_width=16, seed=1)
    again = models.vit(3, 5, 16, patch=4, depth=1, heads=2, width=8, mlp_width=16, seed=1)
    assert _same_weights(model, again)
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(ValueError, match="in_channels 3"):
        models.vit(1, 5, 16)
    with pytest.raises(ValueError, match="size must be a multiple of patch"):
        models.vit(3, 5, 18, patch=4)
    with pytest.raises(ValueError, match="width must be a multiple of heads"):
        models.vit(3, 5, 16, width=10, heads=4)


def test_vit_b_16_loads_local_weights_only_or_builds_random_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vit_b_16-c867db91.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        models.vit_b_16()
    with pytest.raises(ValueError, match="not both"):
        models.vit_b_16(tmp_path / "absent.pth", random_weights=True)
    model = models.vit_b_16(random_weights=True, seed=3)
    assert not model.training and model.heads.head.out_features == 1000
    assert _same_weights(model, models.vit_b_16(random_weights=True, seed=3))
