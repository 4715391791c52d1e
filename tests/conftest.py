"""Shared fixtures: tiny configs, generated image folders, and a runner for the real CLI."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per pool: make test runs a worker per core, and tiny models lose more
# to threads waiting on each other than they gain (measured: 17 % less wall time).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# Memos of checked files (ktransfer.data.memo) go to a folder of this test session's own.
os.environ["KTRANSFER_CACHE"] = tempfile.mkdtemp(prefix="ktransfer-cache-")

import contextlib  # noqa: E402
import csv  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCE_WEIGHTS = REPO / "ktransfer" / "assets" / "digits04_small_cnn.weights.h5"


def _runs_a_process(item) -> bool:
    """Whether a test starts the real CLI (or another Python) in a subprocess."""
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return False
    return any(word in source for word in ("run_cli(", "subprocess.", "Popen("))


# Fixtures that train a model before their tests run.
TRAINING_FIXTURES = {"text_run", "quickstart_run", "corner_model", "scratch", "detector",
                     "box_run"}


def _trains(item) -> bool:
    """Whether a test trains a run in-process (train, find_lr, a search or a fitting fixture)."""
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return False
    return (any(word in source for word in ("train(", "find_lr(", "search("))
            or bool(TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))))


# The files of make test that take longest (seconds of test time on this 2-core VM, measured
# with --durations=0 at ba8d10b: 116, 101, 78, 74, 63, 48, 40, 39; test_detection.py about 70
# at its first commit), started first so that short files, not these, end the run.
LONGEST = ("test_training.py", "test_tasks.py", "test_backbones.py", "test_serving.py",
           "test_interop.py", "test_detection.py", "test_text_training.py", "test_rundir.py",
           "test_recording.py")


def pytest_collection_modifyitems(config, items):
    """Marks tests that run a subprocess `cli` and tests that train a run in-process `trains`
    (`make test-fast` leaves both out), and puts long tests (marked slow; `make test-slow`), the
    transfer demo and the LONGEST files first, so that they do not end the run alone; `make
    test` keeps this order across xdist workers with --no-loadscope-reorder."""
    for item in items:
        if _runs_a_process(item):
            item.add_marker(pytest.mark.cli)
        if _trains(item):
            item.add_marker(pytest.mark.trains)

    def order(item) -> tuple[bool, bool, int]:  # the longest files lead
        name = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
        rank = LONGEST.index(name) if name in LONGEST else len(LONGEST)
        return item.get_closest_marker("slow") is None, "test_transfer.py" != name, rank

    items.sort(key=order)  # stable: otherwise collection order


@pytest.fixture
def repo() -> Path:
    return REPO


@contextlib.contextmanager
def tmpfs(folder: Path, options: str = "size=64k"):
    """A small file system mounted on `folder` for the block (a full or read-only disk);
    the test is skipped where mounting needs a root we lack."""
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root to mount a tmpfs: {mounted.stderr.decode().strip()[:80]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 kB file system (tmpfs) to fill up."""
    with tmpfs(tmp_path / "small") as disk:
        yield disk


def train_killed_after(epochs: int, cfg, monkeypatch) -> None:
    """Runs `train(cfg)` and "kills" it (KeyboardInterrupt) as soon as epoch `epochs` (1-based,
    counted over both phases) is committed to the resume state, where a SIGKILL would leave it;
    undoes the test's monkeypatches afterwards."""
    from ktransfer.training import callbacks, train

    commit = callbacks.ResumeState.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        commit(self, epoch, logs)
        if epoch + 1 == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.ResumeState, "on_epoch_end", on_epoch_end)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.undo()


def layer_test(layer_cls, **kwargs) -> None:
    """Keras' own layer harness (`keras.src.testing.TestCase.run_layer_test`): build, call,
    serialization round trip, weight counts, a training step and mixed precision."""
    from keras.src import testing

    case = testing.TestCase()
    case.setUp()
    case.run_layer_test(layer_cls, **kwargs)


def tiny_values(tmp_path: Path, **overrides) -> dict:
    """Keyword values of a fast run: digits, small_cnn at 16 px, one epoch, quiet."""
    values = dict(data="builtin:digits", backbone="small_cnn", weights="none", image_size=16,
                  batch_size=32, epochs=1, fine_tune_epochs=0, verbose=0, tensorboard=False,
                  report=False,
                  run_dir=str(tmp_path / "run"))
    values.update(overrides)
    return values


@pytest.fixture
def tiny_config(tmp_path):
    from ktransfer import config

    def make(**overrides):
        return config.build(**tiny_values(tmp_path, **overrides))

    return make


def write_images(root: Path, per_class: int = 12, size: int = 24, seed: int = 0,
                 classes: tuple[str, ...] = ("cat", "dog", "bird")) -> Path:
    """A folder of learnable classes (each a dominant colour plus noise), in mixed formats and
    sizes: png, jpg, bmp and gif."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [200, 200, 40]])
    formats = ["png", "jpg", "bmp", "gif"]
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = size + int(rng.integers(0, 9)), size + int(rng.integers(0, 9))
            pixels = colours[c % len(colours)] + rng.normal(0, 25, (h, w, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            fmt = formats[i % len(formats)]
            image.save(folder / f"img{i:03d}.{fmt}")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_images(tmp_path / "images")


def run_cli(module: str, *args: str, cwd: Path = REPO, timeout: float = 600
            ) -> subprocess.CompletedProcess:
    """Runs `python -m ktransfer.<module> ARGS` in a subprocess, as a user would."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", f"ktransfer.{module}", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one-line error a failed command printed (its last stderr line)."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> Path:
    """A real TFDS dataset, `tiny_shapes` (train 30 / test 12, 3 colour classes), prepared
    offline into a data_dir, as `tfds build` would leave it."""
    import tensorflow_datasets as tfds

    class TinyShapes(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["red", "green", "blue"])}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(30, 0),
                    "test": self._generate_examples(12, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                image = rng.integers(0, 60, (20, 20, 3)).astype(np.uint8)
                image[..., i % 3] += 180
                yield i, {"image": image, "label": i % 3}

    data_dir = tmp_path_factory.mktemp("tfds")
    TinyShapes(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


@pytest.fixture(scope="session")
def tfds_tags_dir(tmp_path_factory) -> Path:
    """Two real multi-label TFDS datasets prepared offline: `tiny_tags` (images whose strong
    colour channels are their labels red / green / blue, a `labels` Sequence(ClassLabel) and
    no supervised keys, as voc has) and `tiny_topic_tags` (texts naming their topics, with
    supervised keys (text, labels)); train 40 / test 16 each."""
    import tensorflow_datasets as tfds

    colours = ["red", "green", "blue"]

    def label_sets(n, seed):
        rng = np.random.default_rng(seed)
        return [sorted({int(c) for c in rng.integers(0, 3, int(rng.integers(1, 3)))})
                for _ in range(n)]

    class TinyTags(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=colours))}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40, 0), "test": self._generate_examples(16, 1)}

        def _generate_examples(self, n, seed):
            for i, labels in enumerate(label_sets(n, seed)):
                image = np.full((12, 12, 3), 20, np.uint8)
                image[..., labels] = 230
                yield i, {"image": image, "labels": labels}

    class TinyTopicTags(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=colours))}),
                supervised_keys=("text", "labels"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40, 2), "test": self._generate_examples(16, 3)}

        def _generate_examples(self, n, seed):
            for i, labels in enumerate(label_sets(n, seed)):
                yield i, {"text": "a " + " and ".join(colours[c] for c in labels) + " thing",
                          "labels": labels}

    data_dir = tmp_path_factory.mktemp("tfds_tags")
    TinyTags(data_dir=str(data_dir)).download_and_prepare()
    TinyTopicTags(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def save_hub_module(path: Path, seed: int = 0, marker: Path | None = None) -> Path:
    """Exports a TF2 SavedModel shaped like a TF Hub image feature-vector module: `__call__`
    (images [B, H, W, 3] in [0, 1], training) -> features [B, 128], plus `variables`,
    `trainable_variables` and `regularization_losses`. With training=True it updates a
    BatchNorm-style moving mean (a non-trainable variable), as real modules do. With `marker`,
    each call also writes that file (a graph that acts on the file system when it runs)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    module = tf.train.Checkpoint()
    module.kernel = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, 8)).astype("float32"),
                                name="conv/kernel")
    module.bias = tf.Variable(np.zeros(8, "float32"), name="conv/bias")
    module.moving_mean = tf.Variable(np.zeros(8, "float32"), trainable=False,
                                     name="bn/moving_mean")

    @tf.function
    def call(images, training=False):
        x = tf.nn.conv2d(images, module.kernel, 2, "SAME") + module.bias
        if training:
            mean = tf.reduce_mean(x, axis=[0, 1, 2])
            module.moving_mean.assign(0.9 * module.moving_mean + 0.1 * mean)
        else:
            mean = module.moving_mean
        x = tf.image.resize(tf.nn.relu(x - mean), [4, 4], method="bilinear")
        if marker is not None:
            with tf.control_dependencies([tf.io.write_file(str(marker), "ran")]):
                x = tf.identity(x)
        return tf.reshape(x, [-1, 4 * 4 * 8])

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    module.__call__ = call
    module.variables = [module.kernel, module.bias, module.moving_mean]
    module.trainable_variables = [module.kernel, module.bias]
    module.regularization_losses = []
    tf.saved_model.save(module, str(path))
    return path


@pytest.fixture(scope="session")
def hub_module(tmp_path_factory) -> Path:
    """A local TF Hub-style module folder (see `save_hub_module`)."""
    return save_hub_module(tmp_path_factory.mktemp("hub") / "feature_vector")


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory, worker_id) -> Path:
    """A run of configs/quickstart.cfg, its head phase only (20 epochs), with its report.
    Trained once for the whole test session: under pytest-xdist the first worker to ask
    trains it in the folder all workers share, the others wait for it (the tests only read
    it; what they write goes to their own tmp_path)."""
    from filelock import FileLock

    from ktransfer import config
    from ktransfer.training import train

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if worker_id != "master" else shared
    run_dir = shared / "quickstart-shared" / "run"
    with FileLock(str(shared / "quickstart-shared.lock")):
        if not (run_dir / "model.keras").is_file() or (run_dir / "resume").exists():
            cfg = config.from_flagfile(REPO / "configs" / "quickstart.cfg", fine_tune_epochs=0,
                                       verbose=0, tensorboard=False, report=True,
                                       run_dir=str(run_dir), weights=str(SOURCE_WEIGHTS),
                                       overwrite=True)
            train(cfg)
    return run_dir


def stored_values(saved_model: Path) -> int:
    """How many numbers a SavedModel's checkpoint holds (every saved tensor's size)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(saved_model / "variables" / "variables"))
    return sum(int(np.prod(shape)) for name, shape in reader.get_variable_to_shape_map().items()
               if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


def variable_values(model) -> int:
    """How many numbers a Keras model's variables hold (weights and random-seed states)."""
    return sum(int(np.prod(v.shape)) for v in model.variables)


def digit_jpeg(path: Path, index: int = 0, size: int = 40) -> Path:
    """A real JPEG of a scikit-learn digit (class str(target)), upscaled to `size` px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images[index] * 16, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).convert("RGB").resize((size, size)).save(path, quality=90)
    return path


POSITIVE = ("good", "great", "lovely", "fine", "superb", "happy", "wonderful", "best")
NEGATIVE = ("bad", "awful", "poor", "boring", "worst", "sad", "terrible", "dull")
NEUTRAL = ("the", "film", "movie", "plot", "actor", "was", "is", "a", "story", "it", "and",
           "very", "quite", "this", "scene", "music")


def sentiment_sentences(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`n` short synthetic reviews and their labels ('negative' / 'positive'): neutral filler
    words plus two or three words of the label's polarity; learnable, not trivial."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = ("negative", "positive")[i % 2]
        words = list(rng.choice(NEUTRAL, int(rng.integers(3, 10))))
        polar = POSITIVE if label == "positive" else NEGATIVE
        words += list(rng.choice(polar, int(rng.integers(2, 4))))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(label)
    return texts, labels


def tagged_sentences(n: int, seed: int = 0) -> tuple[list[str], list[list[str]], list[float]]:
    """`n` synthetic reviews with (tags, score): neutral filler plus 1-3 words of one polarity
    and, in about 40%, the word music; tags are `praise` or `complaint` (the polarity) and
    `music` when it is there; the score is the polar words' count, negative for complaints."""
    rng = np.random.default_rng(seed)
    texts, tags, scores = [], [], []
    fillers = [w for w in NEUTRAL if w != "music"]
    for i in range(n):
        sign, count, music = (-1, 1)[i % 2], int(rng.integers(1, 4)), bool(rng.random() < 0.4)
        words = list(rng.choice(fillers, int(rng.integers(3, 8))))
        words += list(rng.choice(POSITIVE if sign > 0 else NEGATIVE, count))
        words += ["music"] * music
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        tags.append(["praise" if sign > 0 else "complaint"] + ["music"] * music)
        scores.append(float(sign * count))
    return texts, tags, scores


def write_task_table(path: Path, n: int = 160, seed: int = 0) -> Path:
    """A CSV of `tagged_sentences`: text, tags (joined by |) and score columns."""
    texts, tags, scores = tagged_sentences(n, seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "tags", "score"])
        writer.writerows([t, "|".join(g), s] for t, g, s in zip(texts, tags, scores,
                                                                  strict=True))
    return path


def write_digit_table(root: Path, n: int = 300, seed: int = 0) -> Path:
    """ROOT/digits.csv over ROOT/<i>.png: real scikit-learn digits 0-4, one or two side by side
    (8 x 16 px, a blank cell where there is one); columns file, digits (the digits present,
    joined by |) and value (the sum of the digits shown)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    pool = [np.flatnonzero(digits.target == d) for d in range(5)]
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        shown = [int(d) for d in rng.integers(0, 5, int(rng.integers(1, 3)))]
        cells = [digits.images[rng.choice(pool[d])] * 16 for d in shown] + [np.zeros((8, 8))]
        pixels = np.clip(np.concatenate(cells[:2], axis=1), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(root / f"{i:03d}.png")
        rows.append([f"{i:03d}.png", "|".join(str(d) for d in sorted(set(shown))), sum(shown)])
    with (root / "digits.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["file", "digits", "value"], *rows])
    return root / "digits.csv"


def save_tiny_bert(folder: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A randomly initialised BERT (2 layers, 32 wide, a vocabulary of the synthetic reviews'
    words) written in Hugging Face format: config.json, model.safetensors with Hugging Face's
    weight names, vocab.txt and tokenizer_config.json, as a downloaded checkpoint would be."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!",
             *sorted(set(POSITIVE + NEGATIVE + NEUTRAL)), "cafe", "##s"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "strip_accents": None, "tokenizer_class": "BertTokenizer"}))
    inter, positions = 2 * hidden, 64
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(vocab),
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
        "intermediate_size": inter, "max_position_embeddings": positions,
        "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "pad_token_id": 0}))
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(0, 0.2, shape).astype("float32")

    tensors = {"embeddings.word_embeddings.weight": normal(len(vocab), hidden),
               "embeddings.position_embeddings.weight": normal(positions, hidden),
               "embeddings.token_type_embeddings.weight": normal(2, hidden),
               "pooler.dense.weight": normal(hidden, hidden), "pooler.dense.bias": normal(hidden)}
    for norm in ("embeddings.LayerNorm", *(f"encoder.layer.{i}.{part}.LayerNorm"
                                           for i in range(layers)
                                           for part in ("attention.output", "output"))):
        tensors[f"{norm}.weight"] = np.ones(hidden, "float32")
        tensors[f"{norm}.bias"] = np.zeros(hidden, "float32")
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            tensors[f"{p}{name}.weight"] = normal(hidden, hidden)
            tensors[f"{p}{name}.bias"] = normal(hidden)
        tensors[f"{p}intermediate.dense.weight"] = normal(inter, hidden)
        tensors[f"{p}intermediate.dense.bias"] = normal(inter)
        tensors[f"{p}output.dense.weight"] = normal(hidden, inter)
        tensors[f"{p}output.dense.bias"] = normal(hidden)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT checkpoint folder in Hugging Face format (see `save_tiny_bert`)."""
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny_bert")


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, worker_id):
    """A finished text run: 240 synthetic reviews, 3 cached head epochs, 4 fine-tuning epochs
    on a tiny BERT of its own. Trained once for the whole session, as `quickstart_run` is;
    gives `run_dir` and `metrics` (metrics.json)."""
    from types import SimpleNamespace

    from filelock import FileLock

    from ktransfer import config
    from ktransfer.training import train

    shared = tmp_path_factory.getbasetemp()
    shared = (shared.parent if worker_id != "master" else shared) / "text-shared"
    run_dir = shared / "run"
    with FileLock(str(shared) + ".lock"):
        if not (run_dir / "metrics.json").is_file() or (run_dir / "resume").exists():
            bert = save_tiny_bert(shared / "tiny_bert")
            data = write_text_folder(shared / "d", 240)
            train(config.build(**text_values(shared, bert, data=str(data), epochs=3, lr=0.05,
                                             cache_features=True, fine_tune_epochs=4,
                                             fine_tune_lr=3e-3, dropout=0.0, report=True,
                                             overwrite=True)))
    return SimpleNamespace(run_dir=run_dir,
                           metrics=json.loads((run_dir / "metrics.json").read_text()))


def serve_texts(version: Path, texts: list[str]) -> dict:
    """The numeric outputs of a text SavedModel's serving_default on `texts`, loaded in a
    fresh process (TensorFlow Text's ops registered there, as TF Serving would)."""
    code = ("import json, tensorflow as tf, tensorflow_text; "
            f"m = tf.saved_model.load({str(version)!r}); "
            f"out = m.signatures['serving_default'](text=tf.constant({texts!r})); "
            "print(json.dumps({k: v.numpy().tolist() for k, v in out.items() "
            "if v.dtype != tf.string}))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])


def write_text_folder(root: Path, n: int = 60, seed: int = 0) -> Path:
    """ROOT/<label>/<i>.txt of `sentiment_sentences`."""
    texts, labels = sentiment_sentences(n, seed)
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text)
    return root


def text_values(tmp_path: Path, tiny_bert: Path, **overrides) -> dict:
    """Keyword values of a fast text run: a folder of synthetic reviews, the tiny BERT."""
    values = dict(modality="text", data=str(write_text_folder(tmp_path / "reviews", 80)),
                  backbone=f"kerashub:{tiny_bert}", max_length=24, batch_size=16, epochs=3,
                  lr=0.01, fine_tune_epochs=0, verbose=0, tensorboard=False, report=False,
                  run_dir=str(tmp_path / "run"))
    values.update(overrides)
    return values


def save_hub_text_modules(folder: Path, dim: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """(encoder, preprocessor) SavedModels shaped like TF Hub's BERT pair: the preprocessor
    has `tokenize` (strings -> ragged word pieces [B, (words), (pieces)]) and
    `bert_pack_inputs([tokens], seq_length)` -> input_word_ids / input_mask / input_type_ids;
    the encoder maps those to `sequence_output` [B, L, dim] and `pooled_output`, with
    `variables` and `trainable_variables` as TF Hub modules have."""
    import tensorflow as tf

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(set(POSITIVE + NEGATIVE + NEUTRAL))]
    pre = tf.Module()
    pre.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)), default_value=1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(texts):
        words = tf.strings.split(tf.strings.regex_replace(tf.strings.lower(texts), "[^a-z]", " "))
        ids = tf.ragged.map_flat_values(pre.table.lookup, words)  # [B, (words)]
        pieces = tf.RaggedTensor.from_row_lengths(ids.flat_values, tf.ones_like(ids.flat_values))
        return ids.with_flat_values(pieces)  # [B, (words), (pieces)]: one piece per word

    @tf.function(input_signature=[[tf.RaggedTensorSpec([None, None, None], tf.int64, 2)],
                                  tf.TensorSpec([], tf.int32)])
    def bert_pack_inputs(segments, seq_length):
        tokens = segments[0].merge_dims(-2, -1)[:, :seq_length - 2]
        batch = tokens.nrows()
        full = tf.concat([tf.fill([batch, 1], tf.constant(2, tf.int64)), tokens,
                          tf.fill([batch, 1], tf.constant(3, tf.int64))], axis=1)
        dense = full.to_tensor(0)
        dense = tf.pad(dense, [[0, 0], [0, seq_length - tf.shape(dense)[1]]])
        ids = tf.cast(dense, tf.int32)
        return {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32),
                "input_type_ids": tf.zeros_like(ids)}

    pre.tokenize, pre.bert_pack_inputs = tokenize, bert_pack_inputs
    tf.saved_model.save(pre, str(folder / "preprocess"))
    rng = np.random.default_rng(seed)
    enc = tf.train.Checkpoint()
    enc.embedding = tf.Variable(rng.normal(0, 0.5, (len(vocab), dim)).astype("float32"))
    enc.kernel = tf.Variable(rng.normal(0, 0.3, (dim, dim)).astype("float32"))
    spec = {k: tf.TensorSpec([None, None], tf.int32)
            for k in ("input_word_ids", "input_mask", "input_type_ids")}

    @tf.function(input_signature=[spec, tf.TensorSpec([], tf.bool)])
    def call(inputs, training=False):
        x = tf.nn.tanh(tf.gather(enc.embedding, inputs["input_word_ids"]) @ enc.kernel)
        return {"sequence_output": x, "pooled_output": x[:, 0]}

    enc.__call__ = call
    enc.variables = [enc.embedding, enc.kernel]
    enc.trainable_variables = [enc.embedding, enc.kernel]
    enc.regularization_losses = []
    tf.saved_model.save(enc, str(folder / "encoder"))
    return folder / "encoder", folder / "preprocess"


def save_kerashub_resnet(folder: Path) -> Path:
    """A small seeded keras-hub ResNet and its image converter (24 px) as a preset folder."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)  # the same random backbone in every run
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(None, None, 3)).save_to_preset(str(folder))
    keras_hub.layers.ResNetImageConverter(image_size=(24, 24), scale=1 / 255.0
                                          ).save_to_preset(str(folder))
    return folder


def save_user_model(path: Path, lambda_layer: bool = False) -> Path:
    """A user's own small classifier file: conv features -> flatten -> softmax over 4 (with
    `lambda_layer`, code inside it)."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 1.0, name="code")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="features_conv")(x)
    x = keras.layers.Flatten(name="features")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="old_head")(x)
    keras.Model(inputs, outputs, name="mine").save(path)
    return path


def lite_reference_inputs(key: str) -> np.ndarray:
    """Two fixed images [2, S, S, 3] in [0, 255] at EfficientNet-Lite variant `key`'s size:
    coarse random colour blocks (numpy's PCG64 stream is stable across releases), upsampled,
    with fine noise. tests/data/make_lite_reference.py recorded the PyTorch reference's logits
    of these."""
    from ktransfer.image import efficientnet_lite as lite

    size = lite.VARIANTS[key].size
    rng = np.random.default_rng(sorted(lite.VARIANTS).index(key))
    coarse = rng.uniform(0, 255, (2, 8, 8, 3))
    blocks = np.repeat(np.repeat(coarse, -(-size // 8), 1), -(-size // 8), 2)[:, :size, :size]
    return np.clip(blocks + rng.normal(0, 20, blocks.shape), 0, 255).round().astype(np.float32)



def write_digit_boxes(root: Path, n: int = 160, size: int = 128, seed: int = 0,
                      classes: int = 3, most: int = 3) -> Path:
    """ROOT/instances.json (COCO) over ROOT/images/<i>.png: real scikit-learn digits 0 ..
    classes-1, cut to their ink and scaled to 24-48 px high, pasted at random places on a dark
    noisy background, 0-`most` per image (every tenth image may have none); the boxes are
    exact. Category names digit0, digit1, ..."""
    from sklearn.datasets import load_digits

    digits, rng = load_digits(), np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, boxes = [], []
    for i in range(n):
        canvas = rng.normal(30, 12, (size, size)).clip(0, 255)
        for _ in range(int(rng.integers(0 if i % 10 == 0 else 1, most + 1))):
            digit = int(rng.integers(0, classes))
            ink = digits.images[rng.choice(np.flatnonzero(digits.target == digit))]
            rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
            ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            h = int(rng.integers(24, 49))
            w = max(8, int(h * ink.shape[1] / ink.shape[0]))
            glyph = np.asarray(Image.fromarray((ink * 16).clip(0, 255).astype(np.uint8))
                               .resize((w, h), Image.BILINEAR))
            top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            canvas[top:top + h, left:left + w] = np.maximum(canvas[top:top + h, left:left + w],
                                                            glyph)
            boxes.append({"id": len(boxes) + 1, "image_id": i + 1, "category_id": digit + 1,
                          "bbox": [left, top, w, h], "area": w * h, "iscrowd": 0})
        Image.fromarray(canvas.astype(np.uint8)).convert("RGB").save(
            root / "images" / f"{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": size,
                       "height": size})
    categories = [{"id": d + 1, "name": f"digit{d}"} for d in range(classes)]
    (root / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": boxes, "categories": categories}))
    return root / "instances.json"
