"""Sources, augmentations and input pipelines (paper Sec. 3.4 and 4.2)."""

import logging
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_resnet.data import augment
from keras_resnet.data import folders
from keras_resnet.data import pipeline
from keras_resnet.data import sources
from keras_resnet.errors import ArgumentError


def _seed(i):
    return tf.constant([i, 7], "int64")


def _gradient_image(h, w):
    """Left-to-right and top-to-bottom ramps: every pixel is distinct."""
    rows = np.linspace(0, 120, h)[:, None]
    cols = np.linspace(0, 120, w)[None, :]
    cols = np.broadcast_to(cols, (h, w))
    return np.stack([rows + cols, 255 - rows - cols, cols * 2], -1).astype("uint8")


def _is_flipped(out):
    # The third channel grows to the right in the original.
    return out[:, :, 2].mean(0)[0] > out[:, :, 2].mean(0)[-1]


def test_cifar_augmentation_pads_crops_and_flips():
    image = _gradient_image(32, 32)
    outs = [augment.pad_crop_flip(image, _seed(i), 32).numpy() for i in range(40)]
    assert all(o.shape == (32, 32, 3) and o.dtype == np.float32 for o in outs)
    assert min(o.min() for o in outs) >= 0 and max(o.max() for o in outs) <= 255
    # 9x9 crop offsets x 2 flips: 40 draws give many distinct views.
    assert len({o.tobytes() for o in outs}) >= 20
    flips = [_is_flipped(o) for o in outs]
    assert 5 < sum(flips) < 35
    # Padding is 4 pixels: some crops show a zero border, none more than 4 wide.
    zero_cols = [int((o.sum(axis=(0, 2)) == 0).sum()) for o in outs]
    assert max(zero_cols) == 4 and min(zero_cols) == 0
    # The same seed gives the same view.
    np.testing.assert_array_equal(augment.pad_crop_flip(image, _seed(3), 32), outs[3])


def test_cifar_augmentation_pads_with_the_mean():
    # A black image padded with 100: each crop is the image, shifted by up to
    # 4 pixels, beside bands of exactly 100 (the mean, which is zero once
    # subtracted), and most crops show some padding.
    borders = []
    for i in range(12):
        out = augment.pad_crop_flip(np.zeros((32, 32, 3), "uint8"), _seed(i), 32, pad_value=100.0)
        out = out.numpy()
        assert set(np.unique(out)) <= {0.0, 100.0}
        image = np.argwhere(out[..., 0] == 0)
        (top, left), (bottom, right) = image.min(0), image.max(0) + 1
        assert (out[top:bottom, left:right] == 0).all()  # one rectangle: the image
        borders.append((32 - (bottom - top), 32 - (right - left)))
    assert all(0 <= rows <= 4 and 0 <= cols <= 4 for rows, cols in borders), borders
    assert sum(rows + cols > 0 for rows, cols in borders) >= 8, borders


def test_imagenet_augmentation_scales_crops_flips_and_shifts_colour():
    image = _gradient_image(90, 120)
    outs = [augment.scale_crop_flip(image, _seed(i), 56, pca_std=0.1).numpy() for i in range(30)]
    assert all(o.shape == (56, 56, 3) and o.dtype == np.float32 for o in outs)
    assert min(o.min() for o in outs) >= 0 and max(o.max() for o in outs) <= 255
    assert len({o.tobytes() for o in outs}) == 30
    assert 3 < sum(_is_flipped(o) for o in outs) < 27
    # PCA lighting moves the colour of the same crop.
    plain = augment.scale_crop_flip(image, _seed(1), 56).numpy()
    assert not np.allclose(plain, outs[1])


def test_imagenet_augmentation_scale_range():
    # Shorter side in [256, 480] for 224 crops: a uniform image's crop never
    # shows anything but the image, however it was scaled.
    image = np.full((60, 80, 3), 77, "uint8")
    out = augment.scale_crop_flip(image, _seed(0), 224).numpy()
    np.testing.assert_allclose(out, 77, atol=1e-3)


def test_eval_views_are_deterministic_centre_crops():
    image = _gradient_image(64, 96)
    out = augment.resize_center_crop(image, 56).numpy()
    assert out.shape == (56, 56, 3)
    np.testing.assert_array_equal(out, augment.resize_center_crop(image, 56).numpy())
    assert not _is_flipped(out)
    assert augment.resize_to(image[:32, :32], 32).numpy().dtype == np.float32


def test_inception_crop_shapes_and_variety():
    image = _gradient_image(64, 80)
    outs = [augment.inception_crop_flip(image, _seed(i), 32).numpy() for i in range(10)]
    assert all(o.shape == (32, 32, 3) for o in outs)
    assert len({o.tobytes() for o in outs}) == 10


def test_synthetic_pipeline_batches_means_and_determinism():
    kw = dict(image_size=16, batch_size=8, augment="cifar", synthetic_examples=32, seed=3)
    d = pipeline.make_datasets("synthetic", **kw)
    images, labels = next(iter(d.train))
    assert images.shape == (8, 16, 16, 3) and images.dtype == tf.float32
    assert labels.shape == (8, 10)
    np.testing.assert_array_equal(labels.numpy().sum(-1), 1)
    raw = np.stack([x for x, _ in sources.synthetic(32, 16, 10, 3).examples.as_numpy_iterator()])
    np.testing.assert_allclose(d.pixel_mean, raw.astype("float64").mean(0), rtol=1e-5)
    assert (d.num_train, d.num_val, d.num_classes) == (32, 8, 10)
    again = next(iter(pipeline.make_datasets("synthetic", **kw).train))[0]
    np.testing.assert_array_equal(images, again)
    # Later epochs draw new crops of the same images.
    batches = [b[0].numpy() for b in d.train.take(8)]
    assert not np.array_equal(batches[0], batches[4])


def test_training_order_is_the_same_from_every_iterator_and_new_every_pass():
    # The images a run sees may not hang on how many iterators of its data
    # set were made before its own (which tf.data varies with the load).
    d = pipeline.make_datasets("synthetic", image_size=8, batch_size=8, augment="cifar",
                               synthetic_examples=32, seed=5)
    runs = [[(x.numpy(), y.numpy()) for x, y in d.train.take(8)] for _ in range(2)]
    for (x0, y0), (x1, y1) in zip(*runs, strict=True):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    # Two passes of four batches: the same 32 labels in a new order.
    labels = np.concatenate([y.argmax(-1) for _, y in runs[0]])
    assert sorted(labels[:32]) == sorted(labels[32:])
    assert not np.array_equal(labels[:32], labels[32:])


def test_folder_skips_and_counts_corrupt_images(image_folder):
    root = image_folder
    d = pipeline.make_datasets(str(root), image_size=16, batch_size=4, augment="cifar")
    assert (d.num_train, d.num_val, d.skipped) == (15, 15, 2)
    assert d.class_names == ["class0", "class1", "class2"]
    images, labels = next(iter(d.train))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 3)
    val_images = np.concatenate([x for x, _ in d.val.as_numpy_iterator()])
    assert val_images.shape == (15, 16, 16, 3)


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist: .*nowhere"):
        pipeline.make_datasets(str(tmp_path / "nowhere"), image_size=16, batch_size=4, augment="cifar")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "train" / "b").mkdir()
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(ValueError, match="No JPEG/PNG images in the class folders of .*empty/train"):
        pipeline.make_datasets(str(tmp_path / "empty"), image_size=16, batch_size=4, augment="cifar")
    (tmp_path / "noval" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="must hold train/ and val/"):
        pipeline.make_datasets(str(tmp_path / "noval"), image_size=16, batch_size=4, augment="cifar")


def test_folder_names_have_one_spelling():
    # "DIR/" and "DIR" are one data set (a run's identity); names stay names.
    assert folders.normalize("/data/flowers/") == folders.normalize("/data/flowers") == "/data/flowers"
    assert folders.normalize("./nowhere/") == "./nowhere"  # not a TFDS name
    assert [folders.normalize(n) for n in ("cifar10", "synthetic")] == ["cifar10", "synthetic"]


def test_tfds_cifar10_uses_the_45k_5k_split():
    requested = []

    def as_dataset(builder, split, **kwargs):
        requested.append(str(split))
        images = np.zeros((6, 32, 32, 3), "uint8")
        return tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": np.arange(6) % 10, "id": np.array(["x"] * 6)}
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        d = pipeline.make_datasets("cifar10", image_size=32, batch_size=2, augment="cifar")
    # Paper Sec. 4.2: hyper-parameters chosen on a 45k/5k train/val split.
    assert requested[:2] == ["train[:45000]", "train[45000:]"]
    assert d.num_classes == 10 and len(d.class_names) == 10


def test_tfds_mock_cifar10_pipeline():
    with tfds.testing.mock_data(num_examples=12):
        d = pipeline.make_datasets("cifar10", image_size=32, batch_size=4, augment="cifar")
        images, labels = next(iter(d.train))
    assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 10)
    assert (d.num_train, d.num_val) == (12, 12)


def test_tfds_unavailable_says_how_to_point_at_local_data(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(sources.DatasetUnavailableError, match="cifar10.*no network.*Point data_dir at"):
        pipeline.make_datasets("cifar10", image_size=32, batch_size=4, augment="cifar",
                  data_dir=str(tmp_path))


def test_unknown_dataset_names_the_value():
    with pytest.raises(ValueError, match="Unknown dataset: 'cifar11'"):
        pipeline.make_datasets("cifar11", image_size=32, batch_size=4, augment="cifar")


def test_tfds_split_for_evaluation():
    with tfds.testing.mock_data(num_examples=5):
        split = sources.tfds_split("cifar10", "test")
        image, label = next(iter(split.examples))
    assert (split.count, len(split.class_names), image.shape, image.dtype) == (5, 10, (32, 32, 3), tf.uint8)


def test_augmentations_name_their_test_view():
    # Sec. 4.2 tests CIFAR on the image itself; Sec. 3.4 ImageNet on a centre crop.
    views = {name: a.test_view for name, a in augment.AUGMENTATIONS.items()}
    assert views == {"cifar": "single", "imagenet": "center", "inception": "center"}
    assert set(views.values()) <= set(augment.VIEWS)
    assert augment.get_augmentation("cifar") is augment.AUGMENTATIONS["cifar"]
    with pytest.raises(ArgumentError, match=r"augment must be one of cifar, imagenet, inception. "
                                            r"Received: augment='autoaugment'"):
        augment.get_augmentation("autoaugment")
    # The pad value and the PCA noise reach the augmentation through the options.
    image = np.zeros((32, 32, 3), "uint8")
    padded = augment.AUGMENTATIONS["cifar"].train(image, _seed(0), 32, augment.AugmentOptions(pad_value=100.0))
    assert set(np.unique(padded.numpy())) <= {0.0, 100.0} and padded.numpy().max() == 100.0
    noisy = augment.AUGMENTATIONS["imagenet"].train(
        _gradient_image(64, 64), _seed(1), 56, augment.AugmentOptions(pca_std=0.1))
    np.testing.assert_allclose(noisy, augment.scale_crop_flip(_gradient_image(64, 64), _seed(1), 56, 0.1))


def test_views_share_one_test_resize():
    image = _gradient_image(64, 96)
    center = augment.VIEWS["center"](image, 56).numpy()
    assert center.shape == (1, 56, 56, 3)
    # The 10 crops' fifth is the centre crop (Table 3), the sixth the first flipped.
    crops = augment.VIEWS["10crop"](image, 56).numpy()
    np.testing.assert_array_equal(crops[4], center[0])
    np.testing.assert_array_equal(augment.one_view("single")(image, 56), augment.resize_to(image, 56))
    # 256 / 224 of the size: the multiscale view at 256 is the crop's resize.
    (whole,) = augment.multiscale_views(image, 56, (256,))
    assert whole.shape == (1, 64, 96, 3) and augment.scaled(256, 56) == 64
    with pytest.raises(ArgumentError, match="view must be one of single, center"):
        augment.one_view("10crop")


def test_validation_images_get_the_test_view(image_folder):
    # "imagenet" validates on the centre crop: the same pixels as VIEWS["center"].
    d = pipeline.make_datasets(str(image_folder), image_size=8, batch_size=15, augment="imagenet",
                      pixel_mean=False, options=augment.AugmentOptions(pca_std=0.1))
    (images, _), = d.val.as_numpy_iterator()
    split = folders.folder_test_split(str(image_folder))
    expected = np.stack([augment.VIEWS["center"](x, 8)[0] for x, _ in split.examples.as_numpy_iterator()])
    np.testing.assert_allclose(images, expected)
    with pytest.raises(ArgumentError, match="batch_size must be at most the number of training images, 15"):
        pipeline.make_datasets(str(image_folder), image_size=8, batch_size=16, augment="cifar")


def test_one_folder_reader_for_training_evaluation_and_export(image_folder):
    source = folders.folder_source(str(image_folder))
    assert (source.train.count, source.train.skipped, source.val.count) == (15, 2, 15)
    assert source.train.class_names == ("class0", "class1", "class2")
    assert source.train.decoded_bytes == sum(12 * (12 + i) * 3 for i in range(5)) * 3
    labels = [int(y) for _, y in source.val.examples.as_numpy_iterator()]
    assert labels == [0] * 5 + [1] * 5 + [2] * 5
    # Evaluation: one split, labelled by train/'s classes.
    assert folders.folder_test_split(str(image_folder), "train").count == 15
    # Export: images at any depth, a seeded shuffle, the first `limit` readable.
    some = folders.read_folder(str(image_folder), limit=4, seed=0)
    again = folders.read_folder(str(image_folder), limit=4, seed=0)
    assert some.count == 4 and some.class_names == ()
    shapes = [x.shape for x, _ in some.examples.as_numpy_iterator()]
    assert shapes == [x.shape for x, _ in again.examples.as_numpy_iterator()]
    assert len({s[1] for s in shapes}) > 1  # not the first class folder's first files
    assert folders.read_folder(str(image_folder)).count == 30  # 32 images, 2 corrupt
    with pytest.raises(ValueError, match="Dataset folder does not exist: '/no/such'"):
        folders.folder_test_split("/no/such")


# ------------------------------------------------------------ data hygiene


def _load(root, **kwargs):
    return pipeline.make_datasets(str(root), image_size=8, batch_size=3, augment="cifar", pixel_mean=False,
                         **kwargs)


def _images_of(split):
    """The decoded images of a split, as bytes: the images are random, so
    equal bytes are the same file."""
    return [x.tobytes() for x, _ in split.examples.as_numpy_iterator()]


def _write_png(path, height, width):
    tf.io.write_file(str(path), tf.io.encode_png(np.zeros((height, width, 3), "uint8")))


def _png_declaring(width, height):
    """A real 12x12 PNG whose IHDR says width x height (CRC fixed): decoding
    it fails, so only a reader of its header can call it large."""
    png = bytearray(tf.io.encode_png(np.zeros((12, 12, 3), "uint8")).numpy())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))  # IHDR's type and data
    return bytes(png)


def test_hidden_files_and_folders_are_not_data(image_folder):
    root = image_folder
    for split in ("train", "val"):  # as Jupyter leaves them
        (root / split / ".ipynb_checkpoints").mkdir()
        _write_png(root / split / ".ipynb_checkpoints" / "x-checkpoint.png", 12, 12)
    _write_png(root / "train" / "class0" / "._0.png", 12, 12)  # macOS's AppleDouble
    d = _load(root)
    assert d.class_names == ["class0", "class1", "class2"]
    assert (d.num_train, d.num_val, d.skipped) == (15, 15, 2)
    # Export's reader of images at any depth leaves them out too.
    assert folders.read_folder(str(root)).count == 30


def test_symlink_loops_are_refused_naming_the_link(image_folder, tmp_path):
    root = image_folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for i in range(2):
        _write_png(elsewhere / f"{i}.png", 12, 12)
    # A class folder linked to a folder outside the data set is read.
    os.symlink(elsewhere, root / "train" / "class3")
    assert _load(root).num_train == 17
    assert folders.read_folder(str(root)).count == 32
    # One linked to a folder above it is a loop.
    os.symlink(root, root / "train" / "class4")
    with pytest.raises(ValueError, match=r"Folder '.*train/class4' links to '.*images', which holds it"):
        _load(root)
    with pytest.raises(ValueError, match=r"'.*train/class4' links to .* \(a symlink loop\)"):
        folders.read_folder(str(root))
    # Two links into each other, each to a folder that does not hold it.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _write_png(a / "0.png", 12, 12)
    os.symlink(b, a / "to_b")
    os.symlink(a, b / "to_a")
    with pytest.raises(ValueError, match=r"'.*a/to_b/to_a' links to '.*/a', which holds it"):
        folders.read_folder(str(a))


def test_training_class_folders_need_a_readable_image(image_folder):
    root = image_folder
    (root / "train" / "class3").mkdir()
    (root / "train" / "class4").mkdir()
    (root / "train" / "class4" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Class folder '.*train/class3' \(and 1 more\) has no "
                                         r"readable JPEG/PNG image"):
        _load(root)
    # Evaluation scores a val/ class without images (test_evaluate); training cannot learn one.
    (root / "train" / "class3" / "0.png").write_bytes((root / "train" / "class0" / "0.jpg").read_bytes())
    (root / "train" / "class4" / "broken.png").unlink()
    os.rmdir(root / "train" / "class4")
    assert _load(root).class_names == ["class0", "class1", "class2", "class3"]


def test_one_class_is_refused(tmp_path):
    root = tmp_path / "one"
    for split in ("train", "val"):
        (root / split / "cat").mkdir(parents=True)
        _write_png(root / split / "cat" / "0.png", 12, 12)
    with pytest.raises(ValueError, match=r"'.*one/train' has 1 class folder \(cat\); training needs "
                                         r"at least 2 classes"):
        _load(root)


def test_train_and_test_without_val_hold_out_a_seeded_validation_split(image_folder):
    root = image_folder
    os.rename(root / "val", root / "test")
    source = folders.folder_source(str(root), seed=0)
    # 10% of 5 readable images a class rounds to 1: every class is validated.
    assert (source.train.count, source.val.count, source.test.count) == (12, 3, 15)
    assert [int(y) for _, y in source.val.examples.as_numpy_iterator()] == [0, 1, 2]
    train, val = _images_of(source.train), _images_of(source.val)
    assert not set(train) & set(val)
    assert val == _images_of(folders.folder_source(str(root), seed=0).val)
    assert val != _images_of(folders.folder_source(str(root), seed=1).val)
    # Training validates on the held-out share and scores test/ apart.
    d = _load(root, seed=1)
    assert (d.num_train, d.num_val, d.num_test, d.skipped) == (12, 3, 15, 2)
    assert sum(len(y) for _, y in d.test.as_numpy_iterator()) == 15
    assert d.splits == {"train": f"{root}/train minus 10% held out (seed 1)",
                        "val": f"10% of {root}/train (seed 1, 3 images)",
                        "test": f"{root}/test"}
    assert _load(root, val_fraction=0.5).num_val == 9  # 2.5 of each 5 rounds to 3
    # Evaluation scores test/ whole.
    assert folders.folder_test_split(str(root)).count == 15
    with pytest.raises(ArgumentError, match="val_fraction must be > 0 and < 1. Received: val_fraction=1"):
        _load(root, val_fraction=1)


def test_val_folder_validates_and_test_is_scored_apart(image_folder):
    root = image_folder
    d = _load(root)
    assert (d.num_val, d.test, d.num_test) == (15, None, 0)
    assert d.splits == {"train": f"{root}/train", "val": f"{root}/val"}
    shutil.copytree(root / "val", root / "test")
    os.remove(root / "test" / "class1" / "0.jpg")
    d = _load(root)
    assert (d.num_train, d.num_val, d.num_test) == (15, 15, 14)
    assert d.splits == {"train": f"{root}/train", "val": f"{root}/val", "test": f"{root}/test"}
    # Unlabelled test images (no class folders) are nothing to score.
    shutil.rmtree(root / "test")
    (root / "test").mkdir()
    _write_png(root / "test" / "0.png", 12, 12)
    assert (_load(root).test, folders.folder_source(str(root)).test) == (None, None)


def test_images_above_max_pixels_are_skipped_before_decoding(image_folder, caplog):
    root = image_folder
    _write_png(root / "train" / "class2" / "big.png", 1000, 1200)  # 1.2 MP, 3.6 MB decoded
    (root / "train" / "class2" / "huge.png").write_bytes(_png_declaring(100_000, 100_000))
    caplog.set_level(logging.INFO)
    d = _load(root, max_pixels=1_000_000)
    assert (d.num_train, d.skipped) == (15, 4)  # 2 unreadable, 2 too large
    # huge.png's data is 12x12: decoded, it would fail as unreadable instead.
    large = [r.getMessage() for r in caplog.records if "above max_pixels=1000000" in r.getMessage()]
    assert len(large) == 1 and "huge.png (10000000000 pixels)" in large[0] and "big.png (1200000 pixels)" in large[0]
    assert not [r for r in caplog.records if "unreadable" in r.getMessage() and "huge.png" in r.getMessage()]
    assert (_load(root, max_pixels=1_200_000).num_train, _load(root).num_train) == (16, 16)
    with pytest.raises(ArgumentError, match="max_pixels must be >= 1. Received: max_pixels=0"):
        _load(root, max_pixels=0)


def test_images_grown_above_max_pixels_after_the_scan_are_not_decoded(image_folder):
    split = folders.read_folder(str(image_folder / "val"), str(image_folder / "train"), max_pixels=500)
    assert split.count == 15  # 12 x 12..16 pixels each
    _write_png(image_folder / "val" / "class1" / "1.png", 30, 30)  # decodes
    (image_folder / "val" / "class1" / "3.png").write_bytes(_png_declaring(100_000, 100_000))
    shapes = [x.shape for x, _ in split.examples.as_numpy_iterator()]
    assert len(shapes) == 13 and max(h * w for h, w, _ in shapes) <= 500


def test_synthetic_batch_larger_than_the_set_is_refused_before_allocating():
    # The validation set would be max(batch_size, ...) images: 3e15 bytes.
    with pytest.raises(ArgumentError, match="batch_size must be at most the number of training "
                                            "images, 1024. Received: batch_size=1000000000000"):
        pipeline.make_datasets("synthetic", image_size=32, batch_size=1_000_000_000_000, augment="cifar")
