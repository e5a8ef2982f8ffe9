"""Networks of the kinds the papers explain: builders, training, a cache of trained nets, and the
torchvision ImageNet classifiers loaded from local weights only.

>>> model, info = zoo("digits_cnn_relu")   # trains once (seconds), then loads from the cache
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from workbench import data as datasets
from workbench import text_data
from workbench.device import default_device
from workbench.paths import cache_dir

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _activation(activation: str) -> type[nn.Module]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def _positive(**values: int) -> None:
    for argument, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")


def _seeded(build: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """``build()`` with the global RNG seeded by ``seed`` (and restored after), if given."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mlp(in_features: int, classes: int, hidden: Sequence[int] = (128, 64),
        activation: str = "relu", seed: int | None = None) -> nn.Sequential:
    """Flatten, then ``linear1, relu1/tanh1, ..., output``; images are flattened first."""
    _positive(in_features=in_features, classes=classes)
    act = _activation(activation)

    def build() -> nn.Sequential:
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        for i, units in enumerate(hidden, start=1):
            _positive(**{f"hidden[{i - 1}]": units})
            layers[f"linear{i}"] = nn.Linear(width, units)
            layers[f"{activation}{i}"] = act()
            width = units
        layers["output"] = nn.Linear(width, classes)
        return nn.Sequential(layers)

    return _seeded(build, seed)


def _conv_block(index: int, in_channels: int, out_channels: int, act: type[nn.Module],
                activation: str, convolutions: int = 1) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = []
    for j in range(1, convolutions + 1):
        suffix = f"{index}" if convolutions == 1 else f"{index}_{j}"
        layers.append((f"conv{suffix}", nn.Conv2d(in_channels, out_channels, 3, padding=1)))
        layers.append((f"{activation}{suffix}", act()))
        in_channels = out_channels
    layers.append((f"pool{index}", nn.MaxPool2d(2)))
    return layers


def _classifier(in_features: int, hidden: int, classes: int, act: type[nn.Module],
                activation: str) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("linear1", nn.Linear(in_features, hidden)), (f"{activation}1", act()),
        ("linear2", nn.Linear(hidden, classes)),
    ]))


def _features_classifier(features: list[tuple[str, nn.Module]], classifier: nn.Sequential,
                         ) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(OrderedDict(features)), flatten=nn.Flatten(),
        classifier=classifier,
    ))


def _convolutional(in_channels: int, classes: int, size: int, activation: str,
                   widths: Sequence[int], hidden: int, seed: int | None,
                   convolutions: int) -> nn.Sequential:
    """What ``cnn`` and ``vgg_style`` build: per entry of ``widths`` a block of ``convolutions``
    3x3 convolutions with activations and a 2x2 max pool (``features``), ``flatten``, then
    ``classifier`` (linear, activation, linear).

    Module names (``features.conv1`` or ``features.conv1_2``, ``classifier.linear1``, ...) are
    the state-dict keys of cached weights: they must not change.
    """
    _positive(in_channels=in_channels, classes=classes, size=size, hidden=hidden)
    act = _activation(activation)
    if size < 2 ** len(widths):
        raise ValueError(f"size must be >= {2 ** len(widths)} for {len(widths)} pooling "
                         f"blocks, got {size}")

    def build() -> nn.Sequential:
        features, width, side = [], in_channels, size
        for i, out in enumerate(widths, start=1):
            features += _conv_block(i, width, out, act, activation, convolutions)
            width, side = out, side // 2
        return _features_classifier(
            features, _classifier(width * side * side, hidden, classes, act, activation))

    return _seeded(build, seed)


def cnn(in_channels: int, classes: int, size: int, activation: str = "relu",
        channels: Sequence[int] = (32, 64), hidden: int = 128,
        seed: int | None = None) -> nn.Sequential:
    """``features`` (per entry of ``channels``: 3x3 conv, activation, 2x2 max pool), ``flatten``,
    ``classifier`` (linear, activation, linear), for square inputs of side ``size``."""
    return _convolutional(in_channels, classes, size, activation, channels, hidden, seed,
                          convolutions=1)


def vgg_style(in_channels: int, classes: int, size: int, widths: Sequence[int] = (16, 32, 64),
              activation: str = "relu", hidden: int = 128,
              seed: int | None = None) -> nn.Sequential:
    """VGG in small (Simonyan & Zisserman 2015): per entry of ``widths`` a block of two 3x3
    convolutions with activations and a 2x2 max pool, then a two-layer ``classifier``."""
    return _convolutional(in_channels, classes, size, activation, widths, hidden, seed,
                          convolutions=2)


def vit(in_channels: int, classes: int, size: int, patch: int = 8, depth: int = 4,
        heads: int = 4, width: int = 64, mlp_width: int = 128,
        seed: int | None = None) -> nn.Module:
    """A small vision transformer (Dosovitskiy et al. 2021, "An image is worth 16x16 words",
    ICLR, arXiv 2010.11929): torchvision's ``VisionTransformer`` (pre-norm blocks of
    ``nn.MultiheadAttention`` and a GELU MLP, a class token, the head on it), the same modules
    as ``vit_b_16`` at ``depth`` blocks of ``width`` channels, for RGB images of side ``size``
    cut into ``patch``-pixel patches."""
    from torchvision.models.vision_transformer import VisionTransformer

    _positive(in_channels=in_channels, classes=classes, size=size, patch=patch, depth=depth,
              heads=heads, width=width, mlp_width=mlp_width)
    if in_channels != 3:
        raise ValueError(f"vit takes RGB images (in_channels 3), got in_channels={in_channels}")
    if size % patch:
        raise ValueError(f"size must be a multiple of patch ({patch}), got {size}")
    if width % heads:
        raise ValueError(f"width must be a multiple of heads ({heads}), got {width}")
    return _seeded(lambda: VisionTransformer(size, patch, depth, heads, width, mlp_width,
                                             num_classes=classes), seed)


class TokenCNN(nn.Module):
    """A convolutional sentence classifier in small (Kim 2014, arXiv 1408.5882, section 2):
    token ids ``(N, length)`` -> ``embedding`` -> ``conv`` (1-D over the positions) -> ``relu``
    -> ``pool`` (max over all positions) -> ``output``. Token 0 is padding, embedded as zeros:
    the natural reference for integrated gradients and DeepLIFT at the embedding."""

    def __init__(self, vocabulary_size: int, classes: int, length: int, embedding_dim: int = 16,
                 channels: int = 32, kernel_size: int = 3):
        super().__init__()
        _positive(vocabulary_size=vocabulary_size, classes=classes, length=length,
                  embedding_dim=embedding_dim, channels=channels, kernel_size=kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same length out), got {kernel_size}")
        self.embedding = nn.Embedding(vocabulary_size, embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(embedding_dim, channels, kernel_size, padding=kernel_size // 2)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(length)
        self.output = nn.Linear(channels, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(ids).transpose(1, 2)  # (N, embedding_dim, length)
        return self.output(self.pool(self.relu(self.conv(embedded))).flatten(1))


def token_cnn(vocabulary_size: int, classes: int, length: int, embedding_dim: int = 16,
              channels: int = 32, kernel_size: int = 3, seed: int | None = None) -> TokenCNN:
    """A :class:`TokenCNN` for sequences of ``length`` token ids below ``vocabulary_size``."""
    return _seeded(lambda: TokenCNN(vocabulary_size, classes, length, embedding_dim, channels,
                                    kernel_size), seed)


class TokenTransformer(nn.Module):
    """A transformer sentence classifier in small, BERT-style (Devlin et al. 2019, arXiv
    1810.04805; the blocks of Vaswani et al. 2017 in their pre-norm form): token ids
    ``(N, length)`` -> ``embedding`` -> a learned class token in front -> ``encoder``
    (torchvision's ViT encoder: learned position embedding, pre-norm blocks of
    ``nn.MultiheadAttention`` and a GELU MLP, a final LayerNorm) -> ``head`` on the class
    token. Token 0 is padding, embedded as zeros: the reference at the embedding, as for
    :class:`TokenCNN`."""

    def __init__(self, vocabulary_size: int, classes: int, length: int, width: int = 32,
                 depth: int = 2, heads: int = 4, mlp_width: int = 64):
        from torchvision.models.vision_transformer import Encoder

        super().__init__()
        _positive(vocabulary_size=vocabulary_size, classes=classes, length=length, width=width,
                  depth=depth, heads=heads, mlp_width=mlp_width)
        if width % heads:
            raise ValueError(f"width must be a multiple of heads ({heads}), got {width}")
        self.embedding = nn.Embedding(vocabulary_size, width, padding_idx=0)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = Encoder(length + 1, depth, heads, width, mlp_width, dropout=0.0,
                               attention_dropout=0.0)
        self.head = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(ids)  # (N, length, width)
        tokens = torch.cat([self.class_token.expand(len(embedded), -1, -1), embedded], dim=1)
        return self.head(self.encoder(tokens)[:, 0])


def token_transformer(vocabulary_size: int, classes: int, length: int, width: int = 32,
                      depth: int = 2, heads: int = 4, mlp_width: int = 64,
                      seed: int | None = None) -> TokenTransformer:
    """A :class:`TokenTransformer` for sequences of ``length`` token ids below
    ``vocabulary_size``."""
    return _seeded(lambda: TokenTransformer(vocabulary_size, classes, length, width, depth,
                                            heads, mlp_width), seed)


# --- training ------------------------------------------------------------------------------

@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction of ``x`` whose arg-max output equals ``y`` (computed on the model's device)."""
    if len(x) == 0:
        raise ValueError("x is empty; accuracy needs at least one sample")
    device = next(model.parameters()).device
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        correct += (model(xb.to(device)).argmax(1).cpu() == yb).sum().item()
    return correct / len(x)


def train(model: nn.Module, data: datasets.ImageData, epochs: int = 20, lr: float = 1e-3,
          batch_size: int = 64, seed: int = 0, device: str | torch.device | None = None,
          progress: bool = True, threads: int | None = 1) -> float:
    """Train ``model`` with Adam on the cross-entropy; returns the test accuracy.

    Deterministic under ``seed`` on the CPU (``torch.manual_seed`` and a seeded shuffle). The
    model is left on ``device`` (default: ``default_device()``) in eval mode. On the CPU training
    runs in ``threads`` threads (None: torch's setting): the small nets here gain little from
    more, lose much when cores are shared, and one thread makes results independent of the
    machine's core count.
    """
    _positive(epochs=epochs, batch_size=batch_size)
    if threads is not None:
        _positive(threads=threads)
    if len(data.x_test) == 0:
        raise ValueError(f"data '{data.name}' has an empty test part; use test_fraction > 0")
    device = default_device() if device is None else torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return _train(model, data, epochs, lr, batch_size, seed, device, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(model: nn.Module, data: datasets.ImageData, epochs: int, lr: float, batch_size: int,
           seed: int, device: torch.device, progress: bool) -> float:
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_function = nn.CrossEntropyLoss()
    train_loader, _ = data.loaders(batch_size=batch_size, seed=seed)
    bar = tqdm(range(epochs), desc=f"training on {data.name}", disable=not progress, leave=False)
    for _ in bar:
        total, count = 0.0, 0
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_function(model(xb), yb)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(xb), count + len(xb)
        bar.set_postfix(loss=f"{total / count:.4f}")
    model.eval()
    return accuracy(model, data.x_test, data.y_test)


def train_with_random_labels(model: nn.Module, data: datasets.ImageData, *, fit: float = 0.99,
                             max_epochs: int = 500, epochs_per_round: int = 10,
                             lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                             device: str | torch.device | None = None,
                             progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The data randomization test's model (Adebayo et al. 2018, section 3.2): a copy of
    ``model`` trained with :func:`train` on ``data`` whose training labels are
    randomly permuted (under ``seed``), until it fits them.

    Training runs in rounds of ``epochs_per_round`` epochs (each round a fresh Adam optimiser,
    seeded ``seed + round``) until the accuracy on the permuted training labels reaches ``fit``
    or ``max_epochs`` have run. ``model`` is copied, never changed; pass it untrained (freshly
    built) to follow the paper.

    Returns
    -------
    The trained copy (eval mode) and an info dict: ``train_accuracy`` (on the permuted labels:
    how well it memorised them), ``test_accuracy`` (on the true test labels: chance level
    expected), ``fitted`` (``train_accuracy >= fit``), ``epochs``, ``seconds``, ``seed``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, datasets.ImageData):
        raise TypeError(f"data must be a workbench.data.ImageData, got {type(data).__name__}")
    if not 0 < fit <= 1:
        raise ValueError(f"fit must be a training accuracy in (0, 1], got {fit!r}")
    for name, value in (("max_epochs", max_epochs), ("epochs_per_round", epochs_per_round)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    permuted = data.y_train[torch.randperm(len(data.y_train), generator=generator)]
    shuffled = datasets.ImageData(data.x_train, permuted, data.x_test, data.y_test, data.classes,
                         f"{data.name} (random labels)")
    trained = copy.deepcopy(model)
    epochs, train_accuracy, start = 0, 0.0, time.perf_counter()
    rounds = tqdm(total=max_epochs, desc="training on random labels", disable=not progress,
                  leave=False)
    with rounds:
        while epochs < max_epochs and train_accuracy < fit:
            step = min(epochs_per_round, max_epochs - epochs)
            train(trained, shuffled, epochs=step, lr=lr, batch_size=batch_size,
                         seed=seed + epochs // epochs_per_round, device=device, progress=False)
            epochs += step
            train_accuracy = accuracy(trained, shuffled.x_train, shuffled.y_train)
            rounds.update(step)
            rounds.set_postfix(train_accuracy=f"{train_accuracy:.3f}")
    info = {
        "train_accuracy": train_accuracy,
        "test_accuracy": accuracy(trained, data.x_test, data.y_test),
        "fitted": train_accuracy >= fit, "epochs": epochs,
        "seconds": time.perf_counter() - start, "seed": seed,
    }
    return trained.eval(), info


# --- cache of trained models ---------------------------------------------------------------

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp, "cnn": cnn, "vgg_style": vgg_style, "vit": vit, "token_cnn": token_cnn,
    "token_transformer": token_transformer,
}
DATASETS: dict[str, Callable[..., datasets.ImageData | text_data.TokenData]] = {
    "digits": datasets.digits, "shapes": datasets.shapes, "mnist": datasets.mnist,
    "cifar10": datasets.cifar10, "image_folder": datasets.image_folder,
    "photo_crops": datasets.photo_crops, "planted_tokens": text_data.planted_tokens,
}
#: builder arguments filled in from the data: name -> function of the data set
_DERIVED = {
    "in_features": lambda data: data.input_shape[0] * data.input_shape[1] * data.input_shape[2],
    "in_channels": lambda data: data.input_shape[0],
    "size": lambda data: data.input_shape[1],
    "classes": lambda data: len(data.classes),
    "vocabulary_size": lambda data: len(data.vocabulary),
    "length": lambda data: data.input_shape[0],
}
_TRAINING = ("epochs", "lr", "batch_size")
_CACHE_FORMAT = 1


def _resolved(function: Callable, given: dict[str, Any], skip: Sequence[str]) -> dict[str, Any]:
    """``given`` completed with the defaults of ``function``'s parameters not in ``skip``."""
    resolved = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in skip:
            continue
        if name in given:
            resolved[name] = given[name]
        elif parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{function.__name__} needs argument '{name}'")
        else:
            resolved[name] = parameter.default
    return json.loads(json.dumps(resolved, default=str))  # tuples -> lists, paths -> str


def settings(architecture: str, dataset: str, seed: int = 0,
             **hyperparameters: Any) -> dict[str, Any]:
    """The complete settings of ``trained(...)``, defaults filled in; their hash is the cache key.

    ``hyperparameters`` go to the data set function (e.g. ``size``, ``root``), to ``train``
    (``epochs``, ``lr``, ``batch_size``) or to the builder (e.g. ``activation``, ``hidden``);
    the builder's input and output sizes come from the data. The data set keeps its own seed.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {list(ARCHITECTURES)}, got {architecture!r}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    load, build = DATASETS[dataset], ARCHITECTURES[architecture]
    data_names = set(inspect.signature(load).parameters) - {"seed"}
    build_names = set(inspect.signature(build).parameters) - set(_DERIVED) - {"seed"}
    unknown = set(hyperparameters) - data_names - build_names - set(_TRAINING)
    if unknown:
        raise TypeError(
            f"unknown hyper-parameters {sorted(unknown)}; accepted: data {sorted(data_names)}, "
            f"model {sorted(build_names)}, training {list(_TRAINING)}"
        )
    def pick(names: set[str] | Sequence[str]) -> dict[str, Any]:
        return {k: v for k, v in hyperparameters.items() if k in names}

    return {
        "format": _CACHE_FORMAT, "architecture": architecture, "dataset": dataset, "seed": seed,
        "data": _resolved(load, pick(data_names), ["seed"]),
        "model": _resolved(build, pick(build_names), [*_DERIVED, "seed"]),
        "training": _resolved(train, pick(_TRAINING), ["model", "data", "seed", "device",
                                                        "progress", "threads"]),
    }


def cache_key(settings: dict[str, Any]) -> str:
    """SHA-256 of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _save_atomically(content: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a cache file is for everyone
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(path: Path, model: nn.Module, info: dict[str, Any]) -> None:
    """Write ``model``'s weights (on the CPU) and ``info`` to ``path`` for ``load_model``;
    ``info["arguments"]`` must hold the builder's arguments. Atomic: a reader never sees half a
    file."""
    if "arguments" not in info:
        raise ValueError("info must hold the builder's 'arguments' to load the model back")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _save_atomically({"state_dict": state, "info": info}, path)


def load_model(path: Path, build: Callable[..., nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``save_model`` wrote to ``path`` (``build(**info["arguments"])`` with the
    saved weights, on the CPU) and its ``info``."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        info = content["info"]
        with torch.device("meta"):  # no initialisation: every tensor comes from the file
            model = build(**info["arguments"])
        model.load_state_dict(content["state_dict"], assign=True)
    except Exception as error:
        raise RuntimeError(f"cache file {path} could not be loaded ({error}); delete it to "
                           "train again") from error
    return model, info


def trained(architecture: str, dataset: str, seed: int = 0,
            device: str | torch.device | None = None, progress: bool = True,
            **hyperparameters: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A model of ``architecture`` trained on ``dataset``, from the cache or trained and cached.

    ``seed`` sets the initialisation and the shuffling; see ``settings`` for ``hyperparameters``.
    Returns the model in eval mode and an info dict: ``accuracy`` (test), ``training_seconds``,
    ``settings``, ``arguments`` (of the builder), ``classes``, ``input_shape``, ``path`` and
    ``from_cache``.
    """
    config = settings(architecture, dataset, seed, **hyperparameters)
    build = ARCHITECTURES[architecture]
    path = cache_dir() / f"{dataset}-{architecture}-{cache_key(config)[:20]}.pt"
    device = default_device() if device is None else torch.device(device)
    if path.is_file():
        model, info = load_model(path, build)
        return model.to(device).eval(), {**info, "path": str(path), "from_cache": True}
    data = DATASETS[dataset](**config["data"])
    derived = {name: f(data) for name, f in _DERIVED.items()
               if name in inspect.signature(build).parameters}
    arguments = {**config["model"], **derived}
    model = build(**arguments, seed=seed)
    start = time.perf_counter()
    test_accuracy = train(model, data, seed=seed, device=device, progress=progress,
                          **config["training"])
    info = {
        "accuracy": test_accuracy, "training_seconds": time.perf_counter() - start,
        "settings": config, "arguments": arguments, "classes": list(data.classes),
        "input_shape": list(data.input_shape), "torch_version": str(torch.__version__),
    }
    save_model(path, model, info)
    return model, {**info, "path": str(path), "from_cache": False}


#: default models: name -> arguments of ``trained``
ZOO: dict[str, dict[str, Any]] = {
    "digits_cnn_relu": dict(architecture="cnn", dataset="digits", activation="relu", epochs=20),
    "digits_cnn_tanh": dict(architecture="cnn", dataset="digits", activation="tanh", epochs=20),
    "digits_mlp_relu": dict(architecture="mlp", dataset="digits", activation="relu", epochs=40),
    "digits_mlp_tanh": dict(architecture="mlp", dataset="digits", activation="tanh", epochs=40),
    "digits32_vgg": dict(architecture="vgg_style", dataset="digits", size=32, epochs=15),
    # natural images: 64-pixel crops of scikit-image's shipped photographs, labelled with the
    # photo they come from (``data.photo_crops``); ~0.9 test accuracy, ~40 s to train on 2 cores
    "photos_vgg": dict(architecture="vgg_style", dataset="photo_crops", n=2000, size=64,
                       epochs=6, widths=[16, 32, 64]),
    # a small vision transformer on the same photos at 32 pixels (8 x 8 patches of 4 pixels,
    # a class token): ~0.98 test accuracy, ~90 s to train on 2 cores
    "photos_vit": dict(architecture="vit", dataset="photo_crops", n=2000, size=32, patch=4,
                       epochs=4),
    "shapes_cnn": dict(architecture="cnn", dataset="shapes", epochs=15),
    "shapes_vgg": dict(architecture="vgg_style", dataset="shapes", epochs=15),
    # text: token ids whose class is decided by planted signal words (``text_data``), explained
    # at the embedding; ~1.0 test accuracy, a few seconds to train
    "tokens_cnn": dict(architecture="token_cnn", dataset="planted_tokens", epochs=8),
    # the same sentences, a two-block transformer with a class token (explained at its
    # embedding by the gradient family, CP-LRP and AttnLRP); ~1.0 test accuracy, ~3 s to train
    "tokens_transformer": dict(architecture="token_transformer", dataset="planted_tokens",
                               epochs=10),
}


def zoo(name: str, seed: int = 0, device: str | torch.device | None = None,
        progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo model ``name`` (a key of ``ZOO``) from ``trained``: cached after the first call."""
    if name not in ZOO:
        raise ValueError(f"name must be one of {list(ZOO)}, got {name!r}")
    return trained(**ZOO[name], seed=seed, device=device, progress=progress)


def zoo_data(name: str) -> datasets.ImageData | text_data.TokenData:
    """The data set the zoo model ``name`` is trained and tested on."""
    if name not in ZOO:
        raise ValueError(f"name must be one of {list(ZOO)}, got {name!r}")
    entry = dict(ZOO[name])
    config = settings(entry.pop("architecture"), entry["dataset"],
                      **{k: v for k, v in entry.items() if k != "dataset"})
    return DATASETS[entry["dataset"]](**config["data"])


# --- torchvision ImageNet classifiers from local weights -----------------------------------

def _local_weights(weights_path: str | Path | None, url: str) -> Path:
    """``weights_path``, else ``torch.hub.get_dir()/checkpoints/<file name of url>``; must exist."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights_path {path} does not exist (nothing is downloaded)")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise FileNotFoundError(
            f"no local weights: expected {path} (torch's hub cache) or a file given as "
            f"weights_path; nothing is downloaded, copy the file from {url} there yourself"
        )
    return path


def _torchvision(factory: Callable[..., nn.Module], weights_path: str | Path | None,
                 url: str) -> nn.Module:
    path = _local_weights(weights_path, url)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"weights_path {path} must hold a state_dict, got {type(state).__name__}")
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = factory(weights=None)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def vgg16(weights_path: str | Path | None = None) -> nn.Module:
    """torchvision's VGG-16 with ImageNet weights from ``weights_path`` or the hub cache."""
    from torchvision import models as torchvision_models

    return _torchvision(torchvision_models.vgg16, weights_path,
                        torchvision_models.VGG16_Weights.IMAGENET1K_V1.url)


def alexnet(weights_path: str | Path | None = None) -> nn.Module:
    """torchvision's AlexNet with ImageNet weights from ``weights_path`` or the hub cache."""
    from torchvision import models as torchvision_models

    return _torchvision(torchvision_models.alexnet, weights_path,
                        torchvision_models.AlexNet_Weights.IMAGENET1K_V1.url)


def torchvision_classifier(name: str, weights_path: str | Path) -> nn.Module:
    """torchvision's model ``name`` (``torchvision.models.get_model``'s names, e.g.
    ``"resnet18"``) with the state dict in ``weights_path`` (read with
    ``torch.load(weights_only=True)``), in eval mode; nothing is downloaded."""
    from torchvision import models as torchvision_models

    known = torchvision_models.list_models()
    if name not in known:
        raise ValueError(f"torchvision has no model '{name}'; it has: {', '.join(known)}")
    return _torchvision(lambda weights: torchvision_models.get_model(name, weights=weights),
                        weights_path, url="")


def vit_b_16(weights_path: str | Path | None = None, random_weights: bool = False,
             seed: int = 0) -> nn.Module:
    """torchvision's ViT-B/16 (Dosovitskiy et al. 2021, arXiv 2010.11929) with ImageNet weights
    from ``weights_path`` or the hub cache, or with torchvision's random initialisation under
    ``seed`` (``random_weights=True``: no file needed); nothing is downloaded."""
    from torchvision import models as torchvision_models

    if random_weights:
        if weights_path is not None:
            raise ValueError("give weights_path or random_weights=True, not both")
        return _seeded(lambda: torchvision_models.vit_b_16(weights=None), seed).eval()
    return _torchvision(torchvision_models.vit_b_16, weights_path,
                        torchvision_models.ViT_B_16_Weights.IMAGENET1K_V1.url)
