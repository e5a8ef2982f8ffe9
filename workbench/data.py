"""Image data sets: generated or shipped with the installed packages, and local-only real sets.

Nothing here downloads. ``digits`` (scikit-learn), ``photos`` (scikit-image) and ``shapes``
(generated, with ground truth) always work; ``mnist``, ``cifar10`` and ``image_folder`` read files
already on disk and raise ``FileNotFoundError`` naming the expected paths when they are absent.
"""
from __future__ import annotations

import gzip
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

#: per-channel mean and standard deviation of ImageNet, as used by torchvision's weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: scikit-image sample images stored inside the package (no pooch download needed)
SHIPPED_PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
    "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "moon",
    "page", "retina", "rocket", "text",
)
DEFAULT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon")

#: the shapes ``shapes`` can draw, one class each
SHAPES = ("square", "cross", "ring", "triangle")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def train_test_loaders(data, batch_size: int = 64, seed: int = 0,
                       shuffle: bool = True) -> tuple[DataLoader, DataLoader]:
    """Train and test ``DataLoader``s of a labelled data set (``x_train``, ``y_train``,
    ``x_test``, ``y_test``); the train one shuffles, seeded by ``seed``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size,
                       shuffle=shuffle, generator=generator)
    test = DataLoader(TensorDataset(data.x_test, data.y_test), batch_size=batch_size)
    return train, test


@dataclass(frozen=True, eq=False, repr=False)
class ImageData:
    """A labelled image data set split into train and test parts.

    ``x_*`` are float32 tensors of shape (N, C, H, W), ``y_*`` int64 class indices into
    ``classes``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dim() != 4 or x.dtype != torch.float32:
                raise ValueError(f"x_{part} must be float32 of shape (N, C, H, W), got "
                                 f"{x.dtype} {tuple(x.shape)}")
            if y.dim() != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(f"y_{part} must be int64 of shape ({len(x)},), got "
                                 f"{y.dtype} {tuple(y.shape)}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:]) if len(self.x_train) else tuple(self.x_test.shape[1:])

    def loaders(self, batch_size: int = 64, seed: int = 0,
                shuffle: bool = True) -> tuple[DataLoader, DataLoader]:
        """Train and test ``DataLoader``s; the train one shuffles, seeded by ``seed``."""
        return train_test_loaders(self, batch_size, seed, shuffle)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}('{self.name}', train={len(self.x_train)}, "
                f"test={len(self.x_test)}, shape={self.input_shape}, classes={len(self.classes)})")


@dataclass(frozen=True, eq=False, repr=False)
class ShapesData(ImageData):
    """``ImageData`` with the ground truth of ``shapes``: x = signal + distractor + noise.

    ``mask_*`` (bool, same shape as ``x_*``) marks the pixels of the drawn shape; ``signal_*`` and
    ``distractor_*`` are the two noise-free components of each image.
    """

    mask_train: torch.Tensor
    mask_test: torch.Tensor
    signal_train: torch.Tensor
    signal_test: torch.Tensor
    distractor_train: torch.Tensor
    distractor_test: torch.Tensor


def split_indices(labels: np.ndarray, test_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices; stratified by label when every class allows it."""
    from sklearn.model_selection import train_test_split

    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    indices = np.arange(len(labels))
    if test_fraction in (0.0, 1.0):
        empty = indices[:0]
        return (empty, indices) if test_fraction == 1.0 else (indices, empty)
    try:
        train, test = train_test_split(indices, test_size=test_fraction, random_state=seed,
                                       stratify=labels)
    except ValueError:  # a class too small to be stratified
        train, test = train_test_split(indices, test_size=test_fraction, random_state=seed)
    return np.sort(train), np.sort(test)


def _image_data(x: np.ndarray | torch.Tensor, y: np.ndarray, classes: Sequence[str], name: str,
                test_fraction: float, seed: int) -> ImageData:
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    train, test = split_indices(y.numpy(), test_fraction, seed)
    return ImageData(x[train], y[train], x[test], y[test], list(classes), name)


def digits(size: int = 8, seed: int = 0, test_fraction: float = 0.25) -> ImageData:
    """scikit-learn's 8x8 handwritten digits (1797 images) in [0, 1], shape (N, 1, size, size).

    Upsampled bilinearly when ``size`` > 8; split stratified under ``seed``.
    """
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be an integer >= 8 (the digits are 8x8), got {size}")
    bunch = load_digits()
    x = torch.as_tensor(bunch.images / 16.0, dtype=torch.float32)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    name = "digits" if size == 8 else f"digits{size}"
    return _image_data(x, bunch.target, [str(c) for c in range(10)], name, test_fraction, seed)


def normalize_imagenet(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1] minus the ImageNet mean, divided by its std, per channel."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean) / std


def denormalize_imagenet(images: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize_imagenet``: back to [0, 1] for display."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device)[:, None, None]
    return images * std + mean


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in the output order of torchvision's classifiers."""
    from torchvision.models import VGG16_Weights

    return list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])


def _rgb(image: np.ndarray) -> np.ndarray:
    """Any skimage sample image as float (H, W, 3) in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float64)
    elif np.issubdtype(image.dtype, np.integer):
        image = image / float(np.iinfo(image.dtype).max)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3].astype(np.float64)


def _center_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


@dataclass(frozen=True, eq=False)
class Photos:
    """Sample photographs: ``images`` (N, 3, H, W) ImageNet-normalised float32, and their names."""

    images: torch.Tensor
    names: list[str]

    def display(self) -> torch.Tensor:
        """The images in [0, 1], shape (N, H, W, 3), for plotting."""
        return denormalize_imagenet(self.images).clamp(0, 1).permute(0, 2, 3, 1)


def photos(size: int = 64, names: Sequence[str] = DEFAULT_PHOTOS) -> Photos:
    """scikit-image's shipped sample photographs, centre-cropped to a square, resized to ``size``
    (each pixel the area-weighted mean of the pixels it covers).

    Grayscale images are repeated over 3 channels; channels are normalised with ImageNet's mean
    and std (``IMAGENET_MEAN``, ``IMAGENET_STD``). Only the images in ``SHIPPED_PHOTOS`` are
    accepted because the others would need a download.
    """
    import skimage.data
    from skimage.transform import resize_local_mean

    if isinstance(names, str):
        names = (names,)
    unknown = [n for n in names if n not in SHIPPED_PHOTOS]
    if unknown or not names:
        raise ValueError(f"names must be a non-empty sequence of {', '.join(SHIPPED_PHOTOS)}; "
                         f"got {list(names)}")
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    images = []
    for name in names:
        image = _center_square(_rgb(getattr(skimage.data, name)()))
        images.append(resize_local_mean(image, (size, size), preserve_range=True))
    x = torch.as_tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2).contiguous()
    return Photos(normalize_imagenet(x.clamp(0, 1)), list(names))


def photo_crops(n: int = 2000, size: int = 64, names: Sequence[str] = SHIPPED_PHOTOS,
                min_scale: float = 0.3, seed: int = 0, test_fraction: float = 0.25) -> ImageData:
    """A labelled photo data set without a download: random square crops of scikit-image's
    shipped photographs, each labelled with the photo it comes from (classes: ``names``).

    A crop's side is ``U(min_scale, 1)`` times the photo's shorter side, its place uniform; it
    is resized to ``size`` by averaging (``F.interpolate(mode="area")``, close to the
    area-weighted means of ``photos``) and ImageNet-normalised. The full views that
    ``photos(size, names)`` returns are the centred crops of scale 1: a net trained here
    classifies them in distribution. Classes are balanced; deterministic under ``seed``.
    """
    import skimage.data
    from skimage.transform import resize_local_mean

    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in SHIPPED_PHOTOS]
    if unknown or len(names) < 2:
        raise ValueError(f"names must be at least two of {', '.join(SHIPPED_PHOTOS)}; got {names}")
    if n < 2 * len(names):
        raise ValueError(f"n must be at least 2 per photo ({2 * len(names)}), got {n}")
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(names))
    # each photo shrunk once, to a shorter side of size / min_scale pixels: the smallest crops
    # then hold size pixels across, and every crop is downsampled, as the full views are
    sources = []
    for name in names:
        image = _rgb(getattr(skimage.data, name)())
        factor = min(1.0, size / min_scale / min(image.shape[:2]))
        shape = tuple(max(size, round(side * factor)) for side in image.shape[:2])
        image = resize_local_mean(image, shape, preserve_range=True)
        sources.append(torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1))
    crops = torch.empty(n, 3, size, size)
    for i, label in enumerate(labels):
        image = sources[label]
        height, width = image.shape[-2:]
        side = max(1, round(rng.uniform(min_scale, 1.0) * min(height, width)))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = image[None, :, top:top + side, left:left + side]
        crops[i] = F.interpolate(crop, size=(size, size), mode="area")[0]
    x = normalize_imagenet(crops.clamp(0, 1))
    return _image_data(x, labels, names, "photo_crops", test_fraction, seed)


def _shape_mask(kind: str, centres: np.ndarray, top: int, left: int, extent: int) -> np.ndarray:
    """Boolean mask of one shape inside the box (top, left, extent x extent).

    ``centres`` holds the row and column coordinates of the pixel centres, shape (2, H, W).
    """
    y, x = centres[0] - top, centres[1] - left  # coordinates inside the box, in [0, extent)
    inside = (y >= 0) & (y < extent) & (x >= 0) & (x < extent)
    centre = extent / 2
    if kind == "square":
        return inside
    if kind == "cross":
        half_arm = max(extent / 6, 0.5)
        return inside & ((np.abs(y - centre) <= half_arm) | (np.abs(x - centre) <= half_arm))
    if kind == "ring":
        radius = np.hypot(y - centre, x - centre)
        return inside & (radius <= centre) & (radius >= 0.55 * centre)
    if kind == "triangle":  # apex at the top, base at the bottom of the box
        return inside & (np.abs(x - centre) <= y / 2)
    raise ValueError(f"classes must be a subset of {SHAPES}, got '{kind}'")


def shapes(n: int = 2000, size: int = 32, signal_strength: float = 1.0,
           distractor_strength: float = 1.0, noise: float = 0.1, seed: int = 0,
           test_fraction: float = 0.25, classes: Sequence[str] = SHAPES) -> ShapesData:
    """Shapes with ground truth: ``x = signal_strength * s + a * d + noise``.

    The class is the shape ``s`` (a 0/1 image, see ``SHAPES``) drawn at a random position with a
    random extent in [size/4, size/2]. The distractor ``d`` is a fixed diagonal grating with a
    class-independent amplitude ``a ~ U(-distractor_strength, distractor_strength)``, the setting
    of Kindermans et al. 2018 (PatternNet, sec. 2) in image form; noise is i.i.d. Gaussian.
    Classes are balanced; everything is deterministic under ``seed``.
    """
    classes = list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes) or set(classes) - set(SHAPES):
        raise ValueError(f"classes must be at least two distinct names from {SHAPES}, "
                         f"got {classes}")
    if size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size}")
    if n < 2 * len(classes):
        raise ValueError(f"n must be at least 2 per class ({2 * len(classes)}), got {n}")
    for argument, value in (("signal_strength", signal_strength),
                            ("distractor_strength", distractor_strength), ("noise", noise)):
        if value < 0:
            raise ValueError(f"{argument} must be >= 0, got {value}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes))
    masks = np.zeros((n, size, size), dtype=bool)
    centres = np.mgrid[0:size, 0:size] + 0.5
    for i, label in enumerate(labels):
        extent = int(rng.integers(size // 4, size // 2 + 1))
        top, left = rng.integers(0, size - extent + 1, size=2)
        masks[i] = _shape_mask(classes[label], centres, int(top), int(left), extent)
    rows, cols = np.mgrid[0:size, 0:size]
    grating = np.sin(2 * np.pi * (rows + cols) / (size / 4))
    amplitudes = rng.uniform(-distractor_strength, distractor_strength, size=n)
    signal = signal_strength * masks.astype(np.float32)
    distractor = (amplitudes[:, None, None] * grating[None]).astype(np.float32)
    x = signal + distractor + noise * rng.standard_normal((n, size, size)).astype(np.float32)
    train, test = split_indices(labels, test_fraction, seed)

    def part(array: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[indices, None]))

    y = torch.as_tensor(labels, dtype=torch.int64)
    return ShapesData(
        part(x, train), y[train], part(x, test), y[test], classes, "shapes",
        mask_train=part(masks, train), mask_test=part(masks, test),
        signal_train=part(signal, train), signal_test=part(signal, test),
        distractor_train=part(distractor, train), distractor_test=part(distractor, test),
    )


# --- local-only loaders for the papers' real data sets --------------------------------------

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """An array from an IDX file (the MNIST format), gzip-compressed if the name ends in .gz."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        content = f.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = content[3]
    shape = tuple(int(d) for d in np.frombuffer(content, ">i4", count=ndim, offset=4))
    data = np.frombuffer(content, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {data.size} values but its header says {shape}")
    return data.reshape(shape)


def _find_idx(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def mnist(root: str | Path) -> ImageData:
    """MNIST from the four standard IDX files (optionally .gz) in ``root`` or ``root/MNIST/raw``.

    Images in [0, 1], shape (N, 1, 28, 28); the standard 60000/10000 split.
    """
    root = Path(root).expanduser()
    folders = [root, root / "MNIST" / "raw"]
    found = {part: _find_idx(folders, stem) for part, stem in MNIST_FILES.items()}
    missing = [stem for part, stem in MNIST_FILES.items() if found[part] is None]
    if missing:
        expected = [str(folder / stem) for stem in missing for folder in folders]
        raise FileNotFoundError(
            f"MNIST files not found (nothing is downloaded); expected each of "
            f"{', '.join(expected)} (optionally ending in .gz)"
        )
    arrays = {part: read_idx(path) for part, path in found.items()}

    def images(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array[:, None] / 255.0, dtype=torch.float32)

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array.astype(np.int64))

    return ImageData(images(arrays["x_train"]), labels(arrays["y_train"]),
                     images(arrays["x_test"]), labels(arrays["y_test"]),
                     [str(c) for c in range(10)], "mnist")


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        content = pickle.load(f, encoding="bytes")  # the official format; only load trusted files
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}


def cifar10(root: str | Path) -> ImageData:
    """CIFAR-10 from the python pickle batches in ``root/cifar-10-batches-py`` (or ``root``).

    Images in [0, 1], shape (N, 3, 32, 32); the standard 50000/10000 split.
    """
    root = Path(root).expanduser()
    folder = root if root.name == "cifar-10-batches-py" else root / "cifar-10-batches-py"
    missing = [str(folder / name) for name in CIFAR10_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 files not found (nothing is downloaded): "
                                f"{', '.join(missing)}")
    batches = [_unpickle(folder / name) for name in CIFAR10_FILES]
    classes = list(CIFAR10_CLASSES)
    if (folder / "batches.meta").is_file():
        names = _unpickle(folder / "batches.meta").get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def join(parts: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        y = np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts])
        images = torch.as_tensor(x.reshape(-1, 3, 32, 32) / 255.0, dtype=torch.float32)
        return images, torch.as_tensor(y)

    x_train, y_train = join(batches[:5])
    x_test, y_test = join(batches[5:])
    return ImageData(x_train, y_train, x_test, y_test, classes, "cifar10")


def _load_image(path: Path, size: int) -> np.ndarray:
    """torchvision's ImageNet evaluation transform: shorter side to size/0.875, centre crop."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = round(size / 0.875) / min(image.size)
        width = max(size, round(image.width * scale))
        height = max(size, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.float32) / 255.0


def _read_class_folders(root: Path, size: int,
                        classes: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"no class subfolders in {root}; expected {root}/<class>/<image>")
    names = [f.name for f in folders] if classes is None else classes
    unknown = [f.name for f in folders if f.name not in names]
    if unknown:
        raise ValueError(f"classes does not list the folders {unknown} of {root}")
    images, labels = [], []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_load_image(path, size))
                labels.append(names.index(folder.name))
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class "
                                f"subfolders of {root}")
    x = normalize_imagenet(torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).contiguous())
    return x.numpy(), np.asarray(labels), names


def image_folder(root: str | Path, size: int = 224, test_fraction: float = 0.25, seed: int = 0,
                 classes: Sequence[str] | None = None) -> ImageData:
    """An ImageNet-style folder ``root/<class>/<image>``, ImageNet-normalised (N, 3, size, size).

    With subfolders ``root/train`` and ``root/val`` those are the split; otherwise the images are
    split (stratified) with ``test_fraction`` (1.0 puts all of them in the test part). Labels
    index ``classes`` if given (e.g. all 1000 ImageNet folder names, so labels match a
    classifier's outputs), else the sorted folder names. All images are loaded into memory.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root} (expected {root}/<class>/<image>)")
    classes = None if classes is None else list(classes)
    if (root / "train").is_dir() and (root / "val").is_dir():
        x_train, y_train, names = _read_class_folders(root / "train", size, classes)
        x_test, y_test, _ = _read_class_folders(root / "val", size, names)
        return ImageData(torch.from_numpy(x_train), torch.from_numpy(y_train),
                         torch.from_numpy(x_test), torch.from_numpy(y_test), names, root.name)
    x, y, names = _read_class_folders(root, size, classes)
    return _image_data(x, y, names, root.name, test_fraction, seed)
