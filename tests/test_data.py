"""Data sources, splits, class weights, augmentation and the tf.data pipeline."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.errors import ConfigError, DataError
from ktransfer.image import imageset, sources
from ktransfer.image.augmentation import Augmentation
from ktransfer.image.imageset import ImageSet
from ktransfer.image.modality import IMAGE
from ktransfer.image.pipeline import make_dataset
from ktransfer.network.features import feature_dataset

from conftest import digit_jpeg, write_images


def _materialize(images):
    xs, ys = zip(*[(x.numpy(), int(y)) for x, y in images.dataset()], strict=True)
    return list(xs), np.array(ys)


def test_builtin_digits_split_is_stratified_and_disjoint():
    splits = IMAGE.load_splits(config.build(data="builtin:digits", val_split=0.2,
                                            test_split=0.2, split_seed=3))
    assert splits.class_names == tuple(str(i) for i in range(10))
    sizes = len(splits.train), len(splits.val), len(splits.test)
    assert sum(sizes) == 1797
    assert abs(len(splits.test) - 0.2 * 1797) < 12
    for part in (splits.train, splits.val, splits.test):
        assert set(np.unique(part.labels)) == set(range(10))
    # Same seed -> same split; another seed -> another one.
    again = IMAGE.load_splits(config.build(data="builtin:digits", split_seed=3))
    other = IMAGE.load_splits(config.build(data="builtin:digits", split_seed=4))
    assert np.array_equal(again.test.images, splits.test.images)
    assert not np.array_equal(other.test.images, splits.test.images)


def test_classes_subset_keeps_given_order_and_per_class_limit():
    splits = IMAGE.load_splits(config.build(data="builtin:digits", classes=("7", "2"),
                                            train_per_class=4))
    assert splits.class_names == ("7", "2")
    assert np.bincount(splits.train.labels).tolist() == [4, 4]
    # Label 0 now means digit 7: compare with the original digits of those images.
    full = sources.open_source("builtin:digits")["all"]
    by_image = {full.images[i].tobytes(): full.labels[i] for i in range(len(full))}
    originals = {by_image[img.tobytes()] for img in splits.val.images[splits.val.labels == 0]}
    assert originals == {7}


def test_unknown_class_is_a_clear_error():
    with pytest.raises(DataError, match=r"^--classes: class 'x' is not in the data"):
        IMAGE.load_splits(config.build(data="builtin:digits", classes=("1", "x")))


def test_folder_of_classes_mixed_formats_and_sizes(image_folder):
    images = sources.read_class_folders(image_folder)
    assert images.class_names == ("bird", "cat", "dog")
    assert len(images) == 36
    suffixes = {f.rsplit(".", 1)[1] for f in images.files}
    assert suffixes == {"png", "jpg", "bmp", "gif"}
    xs, ys = _materialize(images)
    assert all(x.ndim == 3 and x.shape[2] == 3 and x.dtype == np.uint8 for x in xs)
    assert len({x.shape for x in xs}) > 1  # sizes differ before resizing
    # Folder "cat" was written with colour 0 (red) dominant.
    cat = [x for x, y in zip(xs, ys, strict=True) if y == 1]
    assert all(x[..., 0].mean() > x[..., 2].mean() + 80 for x in cat)


def test_folder_with_given_splits(tmp_path):

    write_images(tmp_path / "d" / "train", per_class=8)
    write_images(tmp_path / "d" / "validation", per_class=3, seed=1)
    write_images(tmp_path / "d" / "test", per_class=2, seed=2)
    splits = IMAGE.load_splits(config.build(data=f"folder:{tmp_path / 'd'}"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 9, 6)
    # Only a test folder given: validation is carved from train with --val_split of it.
    (tmp_path / "d" / "validation").rename(tmp_path / "elsewhere")
    splits = IMAGE.load_splits(config.build(data=f"folder:{tmp_path / 'd'}", val_split=0.25))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        sources.read_class_folders(tmp_path / "empty")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        sources.read_class_folders(tmp_path / "noimg")


def test_tfds_source_reads_a_prepared_dataset(tfds_dir):
    splits = IMAGE.load_splits(config.build(data="tfds:tiny_shapes", data_dir=str(tfds_dir),
                                            val_split=0.2, test_split=0.0))
    assert splits.class_names == ("red", "green", "blue")
    assert len(splits.test) == 12  # the dataset's own test split
    assert len(splits.train) + len(splits.val) == 30
    xs, ys = _materialize(splits.val)
    assert len(ys) == len(splits.val)
    assert np.array_equal(np.sort(ys), np.sort(splits.val.labels))
    for x, y in zip(xs, ys, strict=True):  # label c has colour channel c dominant
        assert int(np.argmax(x.reshape(-1, 3).mean(0))) == y


def test_tfds_label_sets_are_multi_label_targets(tfds_tags_dir):
    """A Sequence(ClassLabel) feature named by --label_column (no supervised keys) gives
    multi-hot targets that stay with their images; a single-label run is told the task."""
    cfg = config.build(data="tfds:tiny_tags", data_dir=str(tfds_tags_dir), task="multi_label",
                       label_column="labels", val_split=0.25, test_split=0.0)
    splits = IMAGE.load_splits(cfg)
    assert splits.class_names == ("red", "green", "blue") and len(splits.test) == 16
    assert splits.train.labels.shape == (len(splits.train), 3)
    pairs = [(x.numpy(), y.numpy()) for x, y in splits.val.dataset()]
    assert len(pairs) == len(splits.val)
    for x, y in pairs:  # each label's colour channel is the strong one
        assert np.array_equal(x.reshape(-1, 3).mean(0) > 128, y > 0.5)
    with pytest.raises(DataError, match="pass --task=multi_label"):
        IMAGE.load_splits(config.build(data="tfds:tiny_tags", data_dir=str(tfds_tags_dir),
                                       label_column="labels"))
    with pytest.raises(DataError, match="name its label feature with --label_column"):
        IMAGE.load_splits(config.build(data="tfds:tiny_tags", data_dir=str(tfds_tags_dir),
                                       task="multi_label"))


def test_tfds_offline_missing_dataset_fails_fast(tmp_path):
    start = time.time()
    with pytest.raises(DataError) as info:
        sources.open_source("tfds:cifar10", str(tmp_path))
    assert time.time() - start < 30
    message = str(info.value)
    assert message.startswith("--data=tfds:cifar10: not found in")
    assert "download_and_prepare" in message and "--data_dir=DIR" in message


def test_pipeline_shapes_range_and_one_hot():
    images = sources.open_source("builtin:digits")["all"].subset(np.arange(50))
    ds = make_dataset(images, image_size=20, batch_size=16, training=False)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape[1:] == (20, 20, 3) and x.dtype.name == "float32"
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 255.0
    assert np.array_equal(np.argmax(y.numpy(), 1), images.labels[:16])


def _slowly_counted_decodes(monkeypatch) -> list[int]:
    """Makes every file decode take 20 ms and counts the decodes."""
    count, decode = [0], imageset.decode_file

    def bump() -> np.int32:
        time.sleep(0.02)
        count[0] += 1
        return np.int32(count[0])

    def counted(path):
        with tf.control_dependencies([tf.numpy_function(bump, [], tf.int32, stateful=True)]):
            return tf.identity(decode(path))

    monkeypatch.setattr(imageset, "decode_file", counted)
    return count


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_file_images_stream_shuffled_by_name_and_reshuffle_every_epoch(tmp_path, monkeypatch,
                                                                         cache):
    """The first batch comes before most files are decoded (a shuffle buffer after decoding
    held it back until all 40 were), every epoch is a new order of every image, and the
    memory cache decodes each file once."""
    files = [digit_jpeg(tmp_path / f"{i}.jpg", i) for i in range(40)]
    images = ImageSet(class_names=tuple(str(i) for i in range(40)), labels=np.arange(40,
                      dtype=np.int32), files=np.array([str(f) for f in files]))
    count = _slowly_counted_decodes(monkeypatch)
    ds = make_dataset(images, image_size=16, batch_size=4, training=True, cache=cache, seed=3)
    orders = []
    for epoch in range(3):
        batches = iter(ds)
        first = next(batches)
        if epoch == 0:
            assert count[0] <= 20, f"{count[0]} of 40 files decoded before the first batch"
        ids = [np.argmax(y, 1) for _, y in [first, *batches]]
        orders.append(np.concatenate(ids))
        assert sorted(orders[-1]) == list(range(40)), f"epoch {epoch} is not every image once"
    assert len({tuple(order) for order in orders}) == 3, "an epoch repeated another's order"
    assert not np.array_equal(orders[0], np.arange(40)), "the first epoch is in file order"
    assert count[0] == (40 if cache == "memory" else 120)


@pytest.mark.parametrize("augment", [
    Augmentation(aug_crop=0.5), Augmentation(aug_flip="both"),
    Augmentation(aug_rotation=0.1), Augmentation(aug_zoom=0.2),
    Augmentation(aug_translate=0.2), Augmentation(aug_contrast=0.5),
    Augmentation(aug_noise=10.0), Augmentation(aug_shear=0.3),
    Augmentation(aug_color_jitter=0.5), Augmentation(aug_randaugment="2,9"),
    Augmentation(aug_erasing=1.0),
])
def test_each_augmentation_changes_training_images_only(augment):
    images = sources.open_source("builtin:digits")["all"].subset(np.arange(64))
    kwargs = dict(image_size=16, batch_size=64, cache="none", seed=1)
    plain = next(iter(make_dataset(images, training=False, **kwargs)))[0].numpy()
    aug_x, aug_y = next(iter(make_dataset(images, training=True, augment=augment, **kwargs)))
    aug_x = aug_x.numpy()
    assert aug_x.shape == plain.shape
    assert 0.0 <= aug_x.min() and aug_x.max() <= 255.0
    # Training shuffles, so compare as sets of images: most must have changed.
    plain_set = {p.round(3).tobytes() for p in plain}
    changed = sum(a.round(3).tobytes() not in plain_set for a in aug_x)
    assert changed > 32
    assert sorted(np.argmax(aug_y.numpy(), 1)) == sorted(images.labels)


@pytest.mark.parametrize("augment", [Augmentation(aug_mixup=0.4), Augmentation(aug_cutmix=1.0),
                                     Augmentation(aug_mixup=0.4, aug_cutmix=1.0)])
def test_mixup_and_cutmix_mix_images_and_labels_alike(augment):
    images = sources.open_source("builtin:digits")["all"].subset(np.arange(64))
    kwargs = dict(image_size=16, batch_size=64, cache="none", seed=1)
    for x, y in make_dataset(images, training=True, augment=augment, **kwargs).take(3):
        y = y.numpy()
        np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)  # still distributions
        mixed = y.max(1) < 0.999
        assert mixed.sum() > 16  # most rows take a share of another image's label
        assert (np.count_nonzero(y > 1e-6, axis=1) <= 2).all()  # pairs, never more
        assert 0.0 <= x.numpy().min() and x.numpy().max() <= 255.0
    plain = next(iter(make_dataset(images, training=False, augment=augment, **kwargs)))[1]
    assert set(np.unique(plain.numpy())) == {0.0, 1.0}  # evaluation keeps hard labels


def test_augmentation_flags_are_checked():
    with pytest.raises(ConfigError, match="^--aug_randaugment: give N,M"):
        Augmentation(aug_randaugment="2")
    with pytest.raises(ConfigError, match="^--aug_randaugment: give N,M"):
        Augmentation(aug_randaugment="2,11")
    with pytest.raises(ConfigError, match="^--aug_mixup: must be >= 0"):
        Augmentation(aug_mixup=-1.0)
    assert Augmentation(aug_randaugment="3,9").randaugment() == (3, 9.0)
    assert Augmentation(aug_cutmix=1.0).mixes_labels and not Augmentation().mixes_labels


def test_builtin_digits_rotations():
    digits = sources.open_source("builtin:digits")["all"]
    rotated = sources.open_source("builtin:digits_rotations")["all"]
    assert len(rotated) == 4 * len(digits)
    assert rotated.class_names[:5] == ("0_rot0", "0_rot90", "0_rot180", "0_rot270", "1_rot0")
    n = len(digits)
    # The second quarter is every digit turned by 90 degrees, labelled digit * 4 + 1.
    np.testing.assert_array_equal(rotated.images[n + 7], np.rot90(digits.images[7]))
    assert rotated.labels[n + 7] == digits.labels[7] * 4 + 1


def test_a_folder_that_passed_the_decode_check_unchanged_is_not_decoded_again(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("KTRANSFER_CACHE", str(tmp_path / "cache"))
    root = write_images(tmp_path / "d", per_class=4)
    checks = []
    check = sources._undecodable
    monkeypatch.setattr(sources, "_undecodable", lambda files: checks.append(1) or check(files))
    first = sources.read_class_folders(root)
    again = sources.read_class_folders(root)
    assert len(checks) == 1 and np.array_equal(first.files, again.files)
    victim = sorted(root.rglob("*.png"))[0]
    victim.write_bytes(b"\x89PNG not an image")  # a new size and modification time
    with pytest.raises(DataError, match=f"{victim.name} is not a readable image"):
        sources.read_class_folders(root)
    assert len(checks) == 2
    victim.unlink()  # removed: a new set of files, checked once more and remembered
    sources.read_class_folders(root)
    sources.read_class_folders(root)
    assert len(checks) == 3
    monkeypatch.setenv("KTRANSFER_CACHE", "/proc/no-such-place")  # unwritable: no memo, no error
    sources.read_class_folders(root)
    assert len(checks) == 4


def test_every_input_pipeline_runs_without_tf_data_autotuning():
    """Destroying an autotuned iterator waited idle for tf.data's tuning thread (up to 0.9 s
    after a validation pass, ktransfer.data.options): the image pipelines, the cached
    feature batches and what is built on them (zipped, as adaptation pairs them) have it off."""
    images = ImageSet(("a", "b"), np.array([0, 1, 0, 1]),
                      images=np.zeros((4, 8, 8, 3), np.uint8))
    built = [make_dataset(images, image_size=8, batch_size=2, training=training)
             for training in (True, False)]
    built.append(feature_dataset(np.zeros((4, 3), np.float32), images.labels,
                                 lambda y: tf.one_hot(y, 2), 2))
    built.append(tf.data.Dataset.zip((built[0], built[1])))
    assert [ds.options().autotune.enabled for ds in built] == [False] * 4
    assert sum(1 for _ in built[1]) == 2
