"""workbench.data: generated and shipped sets, and the local-only loaders on tiny fake files."""
from __future__ import annotations

import gzip
import pickle
import re
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from workbench import data


def _row_counts(images: torch.Tensor) -> Counter:
    return Counter(image.numpy().tobytes() for image in images)


# --- digits -------------------------------------------------------------------------------

def test_digits_shapes_dtypes_and_range():
    digits = data.digits()
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.x_test.shape[1:] == (1, 8, 8)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.x_train.min() == 0 and digits.x_train.max() == 1
    assert digits.classes == [str(c) for c in range(10)] and digits.name == "digits"
    assert len(digits.x_test) == pytest.approx(0.25 * 1797, abs=1)


def test_digits_split_is_a_stratified_partition():
    from sklearn.datasets import load_digits

    digits = data.digits()
    full = torch.as_tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]
    assert _row_counts(digits.x_train) + _row_counts(digits.x_test) == _row_counts(full)
    train_counts = torch.bincount(digits.y_train, minlength=10).float()
    test_counts = torch.bincount(digits.y_test, minlength=10).float()
    assert torch.all((test_counts - 0.25 * (train_counts + test_counts)).abs() <= 1)


def test_digits_split_is_deterministic_under_the_seed():
    first, again, other = data.digits(seed=0), data.digits(seed=0), data.digits(seed=1)
    assert torch.equal(first.x_test, again.x_test) and torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.x_test, other.x_test)


def test_digits_upsampled_bilinearly():
    small, large = data.digits(), data.digits(size=32)
    assert large.x_train.shape[1:] == (1, 32, 32) and large.name == "digits32"
    assert torch.equal(small.y_train, large.y_train)
    expected = F.interpolate(small.x_train, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(large.x_train, expected.clamp(0, 1))
    assert 0 <= large.x_train.min() and large.x_train.max() <= 1


@pytest.mark.parametrize("arguments, word", [({"size": 4}, "size"),
                                             ({"test_fraction": 1.5}, "test_fraction")])
def test_digits_errors_name_the_argument(arguments, word):
    with pytest.raises(ValueError, match=word):
        data.digits(**arguments)


def test_loaders_shuffle_under_the_seed_and_keep_the_test_order():
    digits = data.digits()
    (train_a, test_a), (train_b, _), (train_c, _) = (
        digits.loaders(batch_size=32, seed=s) for s in (0, 0, 1))
    xa, ya = next(iter(train_a))
    xb, _ = next(iter(train_b))
    xc, _ = next(iter(train_c))
    assert xa.shape == (32, 1, 8, 8) and ya.shape == (32,)
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    assert torch.equal(torch.cat([x for x, _ in test_a]), digits.x_test)
    with pytest.raises(ValueError, match="batch_size"):
        digits.loaders(batch_size=0)


def test_image_data_rejects_inconsistent_parts():
    x, y = torch.zeros(3, 1, 4, 4), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="y_train"):
        data.ImageData(x, y, x, torch.zeros(3, dtype=torch.int64), ["a"], "bad")


# --- photos -------------------------------------------------------------------------------

def test_photos_are_normalised_rgb_of_the_requested_size():
    photos = data.photos(size=32)
    assert photos.images.shape == (len(data.DEFAULT_PHOTOS), 3, 32, 32)
    assert photos.images.dtype == torch.float32 and photos.names == list(data.DEFAULT_PHOTOS)
    shown = photos.display()
    assert shown.shape == (len(data.DEFAULT_PHOTOS), 32, 32, 3)
    assert shown.min() >= 0 and shown.max() <= 1 and shown.std() > 0.1
    torch.testing.assert_close(data.denormalize_imagenet(photos.images).permute(0, 2, 3, 1),
                               shown)
    camera = shown[photos.names.index("camera")]  # grayscale: the 3 channels are equal
    torch.testing.assert_close(camera[..., 0], camera[..., 2], atol=1e-5, rtol=0)


def test_photos_match_the_skimage_original():
    import skimage.data

    original = skimage.data.astronaut() / 255.0  # square 512x512: a 64x64 pixel is an 8x8 mean
    expected = original.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3))
    shown = data.photos(size=64, names=["astronaut"]).display()[0].double().numpy()
    np.testing.assert_allclose(shown, expected, atol=1e-5)


def test_every_shipped_photo_loads_without_download():
    photos = data.photos(size=8, names=data.SHIPPED_PHOTOS)
    assert photos.images.shape == (len(data.SHIPPED_PHOTOS), 3, 8, 8)
    assert torch.isfinite(photos.images).all()


def test_photos_reject_names_that_would_need_a_download():
    with pytest.raises(ValueError, match="names must be .*astronaut"):
        data.photos(names=["eagle"])


def test_photo_crops_are_balanced_labelled_crops_deterministic_under_the_seed():
    crops = data.photo_crops(n=80, size=16, names=["astronaut", "coffee", "moon", "text"],
                             seed=3)
    assert crops.classes == ["astronaut", "coffee", "moon", "text"]
    assert crops.input_shape == (3, 16, 16) and len(crops.x_train) + len(crops.x_test) == 80
    labels = torch.cat([crops.y_train, crops.y_test])
    assert torch.bincount(labels).tolist() == [20, 20, 20, 20]
    again = data.photo_crops(n=80, size=16, names=["astronaut", "coffee", "moon", "text"],
                             seed=3)
    assert torch.equal(again.x_train, crops.x_train) and torch.equal(again.y_test, crops.y_test)
    other = data.photo_crops(n=80, size=16, names=["astronaut", "coffee", "moon", "text"],
                             seed=4)
    assert not torch.equal(other.x_train, crops.x_train)


def test_a_photo_crop_of_scale_one_is_the_full_view_of_photos():
    names = ["astronaut", "camera"]   # square photos: the only crop of scale 1 is the photo
    crops = data.photo_crops(n=4, size=24, names=names, min_scale=1.0, test_fraction=0.5)
    views = data.photos(size=24, names=names).images
    for x, y in zip(crops.x_train, crops.y_train, strict=True):
        torch.testing.assert_close(x, views[y], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arguments, word", [
    ({"names": ["eagle", "moon"]}, "names"), ({"names": ["moon"]}, "names"),
    ({"n": 3}, "n must"), ({"min_scale": 0.0}, "min_scale"), ({"size": 0}, "size")])
def test_photo_crops_errors_name_the_argument(arguments, word):
    with pytest.raises(ValueError, match=word):
        data.photo_crops(**arguments)


def test_imagenet_classes():
    classes = data.imagenet_classes()
    assert len(classes) == 1000 and classes[0] == "tench"


# --- shapes -------------------------------------------------------------------------------

def test_shapes_types_split_and_balance():
    shapes = data.shapes(n=200, size=24)
    assert shapes.x_train.shape == (150, 1, 24, 24) and shapes.x_test.shape == (50, 1, 24, 24)
    assert shapes.x_train.dtype == torch.float32 and shapes.y_train.dtype == torch.int64
    assert shapes.mask_train.dtype == torch.bool
    assert shapes.mask_train.shape == shapes.x_train.shape
    assert shapes.classes == list(data.SHAPES)
    labels = torch.cat([shapes.y_train, shapes.y_test])
    assert torch.bincount(labels).tolist() == [50] * 4
    assert sorted(torch.bincount(shapes.y_test).tolist()) == [12, 12, 13, 13]
    assert not (_row_counts(shapes.x_train) & _row_counts(shapes.x_test))


def test_shapes_are_deterministic_under_the_seed():
    first, again, other = (data.shapes(n=40, size=16, seed=s) for s in (3, 3, 4))
    for field in ("x_train", "y_train", "x_test", "mask_test", "distractor_train"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    assert not torch.equal(first.x_train, other.x_train)


def test_without_noise_and_distractor_the_image_is_the_masked_signal():
    shapes = data.shapes(n=40, size=16, signal_strength=0.7, distractor_strength=0, noise=0)
    torch.testing.assert_close(shapes.x_train, 0.7 * shapes.mask_train.float(), atol=0, rtol=0)
    assert shapes.mask_train.flatten(1).any(1).all()  # every image has a shape


def test_signal_lives_only_inside_the_mask():
    shapes = data.shapes(n=40, size=16, signal_strength=2.0, noise=0)
    assert torch.all(shapes.signal_train[~shapes.mask_train] == 0)
    assert torch.all(shapes.signal_train[shapes.mask_train] == 2.0)
    torch.testing.assert_close(shapes.x_train - shapes.distractor_train, shapes.signal_train)
    noisy = data.shapes(n=40, size=16, signal_strength=2.0, noise=0.5)
    residual = noisy.x_train - noisy.signal_train - noisy.distractor_train
    assert residual.std().item() == pytest.approx(0.5, rel=0.1)


def test_distractor_is_one_pattern_with_a_class_independent_amplitude():
    shapes = data.shapes(n=2000, size=16)
    distractor = torch.cat([shapes.distractor_train, shapes.distractor_test]).flatten(1)
    labels = torch.cat([shapes.y_train, shapes.y_test])
    assert torch.linalg.matrix_rank(distractor.double()) == 1
    pattern = distractor[distractor.norm(dim=1).argmax()]
    amplitude = distractor @ pattern / pattern.dot(pattern)
    assert amplitude.abs().max() <= 1 + 1e-5
    for label in range(4):
        assert abs(amplitude[labels == label].mean()) < 0.1
        assert amplitude[labels == label].std() > 0.4


def _box(mask: torch.Tensor) -> torch.Tensor:
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_each_class_draws_its_shape():
    shapes = data.shapes(n=80, size=32, noise=0, distractor_strength=0)
    for mask, label in zip(shapes.mask_train[:, 0], shapes.y_train, strict=True):
        box, kind = _box(mask), shapes.classes[label]
        height, width = box.shape
        assert 32 // 4 - 1 <= max(height, width) <= 32 // 2
        if kind == "square":
            assert box.all() and height == width
        elif kind == "ring":
            assert not box[height // 2, width // 2] and not box[0, 0] and box[height // 2, 0]
        elif kind == "cross":
            assert box[height // 2].all() and box[:, width // 2].all() and not box[0, 0]
        else:  # triangle: widest at the bottom, narrow at the top
            assert box[-1].sum() > box[0].sum() and not box[0, 0]


@pytest.mark.parametrize("arguments, word", [
    ({"classes": ["square"]}, "classes"), ({"classes": ["square", "hexagon"]}, "classes"),
    ({"noise": -1.0}, "noise"), ({"size": 4}, "size"), ({"n": 3}, "n must"),
])
def test_shapes_errors_name_the_argument(arguments, word):
    with pytest.raises(ValueError, match=word):
        data.shapes(**arguments)


def test_shapes_subset_of_classes():
    shapes = data.shapes(n=30, size=16, classes=("ring", "cross", "square"))
    assert shapes.classes == ["ring", "cross", "square"]
    assert set(torch.cat([shapes.y_train, shapes.y_test]).tolist()) == {0, 1, 2}


# --- MNIST from IDX files -----------------------------------------------------------------

def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    content = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(content)
    else:
        path.write_bytes(content)


def _fake_mnist(folder, rng) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (5, 28, 28)), "y_train": rng.integers(0, 10, 5),
        "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": rng.integers(0, 10, 3),
    }
    for i, (part, stem) in enumerate(data.MNIST_FILES.items()):
        _write_idx(folder / stem, arrays[part], compress=i % 2 == 0)
    return arrays


@pytest.mark.parametrize("layout", [".", "MNIST/raw"])
def test_mnist_reads_idx_files(tmp_path, layout):
    arrays = _fake_mnist(tmp_path / layout, np.random.default_rng(0))
    mnist = data.mnist(tmp_path)
    assert mnist.x_train.shape == (5, 1, 28, 28) and mnist.x_test.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(mnist.x_train[:, 0].numpy(), arrays["x_train"] / 255.0, atol=1e-7)
    assert mnist.y_test.tolist() == arrays["y_test"].tolist()
    assert mnist.y_train.dtype == torch.int64 and mnist.name == "mnist"


def test_mnist_missing_files_name_the_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.mnist(tmp_path)
    for stem in data.MNIST_FILES.values():
        assert str(tmp_path / stem) in str(error.value)
        assert str(tmp_path / "MNIST" / "raw" / stem) in str(error.value)


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    (tmp_path / "bad").write_bytes(bytes([0, 0, 0x0D, 1]) + np.asarray([1], ">i4").tobytes())
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "bad")


# --- CIFAR-10 from pickle batches ---------------------------------------------------------

def _fake_cifar(folder, rng) -> list[dict]:
    folder.mkdir(parents=True)
    batches = []
    for name in data.CIFAR10_FILES:
        batch = {b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8),
                 b"labels": rng.integers(0, 10, 4).tolist(), b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        batches.append(batch)
    names = [f"class{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return batches


def test_cifar10_reads_pickle_batches(tmp_path):
    batches = _fake_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    cifar = data.cifar10(tmp_path)
    assert cifar.x_train.shape == (20, 3, 32, 32) and cifar.x_test.shape == (4, 3, 32, 32)
    assert cifar.classes == [f"class{i}" for i in range(10)]
    row = batches[0][b"data"][1]  # 1024 red values row by row, then green, then blue
    np.testing.assert_allclose(cifar.x_train[1, 0].numpy(), row[:1024].reshape(32, 32) / 255,
                               atol=1e-7)
    np.testing.assert_allclose(cifar.x_train[1, 2, 0, :3].numpy(), row[2048:2051] / 255, atol=1e-7)
    assert cifar.y_test.tolist() == batches[-1][b"labels"]
    assert torch.equal(data.cifar10(tmp_path / "cifar-10-batches-py").x_test, cifar.x_test)


def test_cifar10_missing_files_name_the_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.cifar10(tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in str(error.value)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(error.value)


# --- image folders ------------------------------------------------------------------------

COLOURS = {"blue": (0, 0, 255), "red": (255, 0, 0)}


def _fake_folder(root, per_class: int = 4) -> None:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (40 + 10 * i, 30 + 5 * i)  # different sizes and aspect ratios
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")
        (root / name / "notes.txt").write_text("not an image")


def _normalised(colour) -> torch.Tensor:
    return (torch.tensor(colour) / 255 - torch.tensor(data.IMAGENET_MEAN)) / torch.tensor(
        data.IMAGENET_STD)


def test_image_folder_loads_class_subfolders(tmp_path):
    _fake_folder(tmp_path)
    images = data.image_folder(tmp_path, size=16, test_fraction=0.5)
    assert images.classes == ["blue", "red"]
    assert images.x_train.shape == (4, 3, 16, 16) and images.x_test.shape == (4, 3, 16, 16)
    assert torch.bincount(images.y_test).tolist() == [2, 2]
    for x, y in zip(torch.cat([images.x_train, images.x_test]),
                    torch.cat([images.y_train, images.y_test]), strict=True):
        expected = _normalised(COLOURS[images.classes[y]])[:, None, None].expand(3, 16, 16)
        torch.testing.assert_close(x, expected.float(), atol=1e-5, rtol=0)


def test_image_folder_train_val_layout_and_given_classes(tmp_path):
    _fake_folder(tmp_path / "train", per_class=2)
    _fake_folder(tmp_path / "val", per_class=1)
    images = data.image_folder(tmp_path, size=8, classes=["cat", "red", "blue"])
    assert len(images.x_train) == 4 and len(images.x_test) == 2
    assert images.y_test.tolist() == [2, 1]  # blue, red as indices into the given classes
    everything = data.image_folder(tmp_path / "val", size=8, test_fraction=1.0)
    assert len(everything.x_train) == 0 and len(everything.x_test) == 2
    with pytest.raises(ValueError, match="classes"):
        data.image_folder(tmp_path / "val", size=8, classes=["red"])


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent"))):
        data.image_folder(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no class subfolders"):
        data.image_folder(tmp_path)
