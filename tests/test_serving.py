"""SavedModel export for TF Serving: layout, signatures, saved_model_cli, atomic versions."""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.deploy import conversion, serving
from ktransfer.deploy.saving import load_classifier, open_classifier
from ktransfer.errors import KtransferError
from ktransfer.image.prediction import load_pixels
from ktransfer.runs import exportdir

from conftest import digit_jpeg, error_line, run_cli, stored_values, variable_values

SAVED_MODEL_CLI = str(Path(sys.executable).parent / "saved_model_cli")


def _export(clf, export_dir, **options):
    return serving.export(clf.model, clf.modality, clf.feed, clf.class_names, export_dir,
                          **options)


@pytest.fixture(scope="module")
def exported(quickstart_run, tmp_path_factory):
    """The quickstart model exported through the CLI to EXPORTS/digits/1."""
    exports = tmp_path_factory.mktemp("exports")
    result = run_cli("export", f"--run_dir={quickstart_run}", f"--export_dir={exports}/digits")
    assert result.returncode == 0, result.stderr
    return exports


def test_layout_is_what_tf_serving_expects(exported, quickstart_run):
    version = exported / "digits" / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert (version / "labels.txt").read_text() == (quickstart_run / "labels.txt").read_text()
    assert [p.name for p in (exported / "digits").iterdir()] == ["1"]  # nothing else, no temp
    config = (exported / "models.config").read_text()
    assert 'name: "digits"' in config and f'base_path: "{exported / "digits"}"' in config
    assert 'model_platform: "tensorflow"' in config


def test_each_weight_is_stored_once(exported, quickstart_run):
    # keras-team/keras#23553: ExportArchive saves every weight twice unless told otherwise.
    model = open_classifier(quickstart_run).model
    assert stored_values(exported / "digits" / "1") == variable_values(model)


@pytest.mark.slow  # TensorFlow's saved_model_cli in a fresh Python: make test-slow
def test_saved_model_cli_lists_both_signatures(exported):
    shown = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", str(exported / "digits" / "1"),
                            "--all"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "signature_def['serving_default']" in out and "signature_def['predict_pixels']" in out
    assert "inputs['image_bytes']" in out and "dtype: DT_STRING" in out
    for name in ("probabilities", "top_k_ids", "top_k_scores", "top_k_names"):
        assert f"outputs['{name}']" in out


@pytest.mark.slow  # TensorFlow's saved_model_cli in a fresh Python: make test-slow
def test_saved_model_cli_run_on_a_jpeg_matches_keras(exported, quickstart_run, tmp_path):
    jpeg = digit_jpeg(tmp_path / "seven.jpg", index=7)
    np.save(tmp_path / "bytes.npy", np.array([jpeg.read_bytes()]))  # dtype S: no pickle
    ran = subprocess.run(
        [SAVED_MODEL_CLI, "run", "--dir", str(exported / "digits" / "1"), "--tag_set", "serve",
         "--signature_def", "serving_default", "--inputs", f"image_bytes={tmp_path / 'bytes.npy'}",
         "--outdir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    served = np.load(tmp_path / "out" / "probabilities.npy")
    model, names, _ = load_classifier(quickstart_run)
    keras_probs = model.predict(load_pixels(str(jpeg), model.input_shape[1])[None], verbose=0)
    assert served.shape == keras_probs.shape == (1, len(names))
    assert np.abs(served - keras_probs).max() < 1e-4
    top_names = np.load(tmp_path / "out" / "top_k_names.npy", allow_pickle=True)
    assert top_names[0][0].decode() == names[int(keras_probs.argmax())]


def test_rest_b64_body_and_pixel_signature_agree_with_keras(exported, quickstart_run, tmp_path):
    """The REST API decodes {"b64": ...} into the `image_bytes` string; a fresh load of the
    SavedModel gives Keras' predictions on both signatures."""
    jpeg = digit_jpeg(tmp_path / "three.jpg", index=3).read_bytes()
    body = json.dumps({"signature_name": "serving_default",
                       "instances": [{"image_bytes": {"b64": base64.b64encode(jpeg).decode()}}]})
    sent = base64.b64decode(json.loads(body)["instances"][0]["image_bytes"]["b64"])
    loaded = tf.saved_model.load(str(exported / "digits" / "1"))
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant([sent]))
    model, _, _ = load_classifier(quickstart_run)
    pixels = load_pixels(str(tmp_path / "three.jpg"), model.input_shape[1])[None]
    by_pixels = loaded.signatures["predict_pixels"](pixels=tf.constant(pixels))
    expected = model.predict(pixels, verbose=0)
    np.testing.assert_allclose(by_bytes["probabilities"].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(by_pixels["probabilities"].numpy(), expected, atol=1e-5)
    assert by_bytes["top_k_ids"].shape == (1, 5)


@pytest.mark.slow  # three exports: make test-slow
def test_second_export_is_version_2_and_versions_are_never_overwritten(quickstart_run, tmp_path):
    clf = open_classifier(quickstart_run)
    assert _export(clf, tmp_path / "m").name == "1"
    assert _export(clf, tmp_path / "m").name == "2"
    with pytest.raises(KtransferError, match="^--version: .* already exists"):
        _export(clf, tmp_path / "m", version=2)
    assert _export(clf, tmp_path / "m", version=7).name == "7"
    assert exportdir.versions(tmp_path / "m") == [1, 2, 7]


def test_interrupted_export_leaves_no_version_folder(quickstart_run, tmp_path, monkeypatch):
    clf = open_classifier(quickstart_run)

    def die(saved_model_dir):  # runs after the SavedModel is written, before the rename
        assert (Path(saved_model_dir) / "saved_model.pb").is_file()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _export(clf, tmp_path / "m", extras=die)
    assert list((tmp_path / "m").iterdir()) == []
    assert not (tmp_path / "models.config").exists()


def test_model_without_a_head_and_bad_names_are_clear_errors(tmp_path, quickstart_run):
    from ktransfer.image.backbones import small_cnn

    small_cnn((16, 16, 3)).save(tmp_path / "backbone.keras")
    result = run_cli("export", f"--model={tmp_path / 'backbone.keras'}",
                     f"--export_dir={tmp_path / 'out' / 'm'}")
    assert result.returncode == 2
    assert "has no head" in error_line(result)
    assert not (tmp_path / "out").exists()
    clf = open_classifier(quickstart_run)
    with pytest.raises(KtransferError, match="^--export_dir: .* must end in a model name"):
        _export(clf, tmp_path / "bad name!")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_the_header_gives_the_image_size_before_decoding(fmt, tmp_path):
    import io

    from PIL import Image

    from ktransfer.image.header import header_pixels

    buffer = io.BytesIO()
    Image.new("RGB", (37, 23), (10, 200, 30)).save(buffer, format=fmt)
    assert int(header_pixels(tf.constant(buffer.getvalue()))) == 37 * 23
    assert int(header_pixels(tf.constant(b"not an image"))) == 0


def test_the_saved_model_refuses_a_decompression_bomb_instead_of_decoding_it(exported,
                                                                            tmp_path):
    """A 101-megapixel PNG of a few hundred kB: before, `serving_default` decoded it (6.4 GB
    for a 400-megapixel one, enough to take a server down); now the request fails at once."""
    import io

    from PIL import Image

    from ktransfer.image.header import MAX_PIXELS

    buffer = io.BytesIO()
    Image.new("1", (10_100, 10_000)).save(buffer, format="PNG")
    assert 10_100 * 10_000 > MAX_PIXELS and len(buffer.getvalue()) < 2_000_000
    serve = tf.saved_model.load(str(exported / "digits" / "1")).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than 100 million pixels"):
        serve(image_bytes=tf.constant([buffer.getvalue()]))


def _frames_gif(side: int, frames: int) -> bytes:
    """A GIF whose logical screen is 1x1 while each of its `frames` frames is side x side
    (one colour, so each compresses to a few kB): the screen says nothing of the frames."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (side, side), 0).save(buffer, format="GIF")
    one = buffer.getvalue()
    start = 13 + 3 * 2 ** ((one[10] & 7) + 1)  # after the global colour table
    assert one[start] == 0x2C and one[-1:] == b";"
    return b"GIF89a\x01\x00\x01\x00" + one[10:start] + one[start:-1] * frames + b";"


def test_the_header_counts_every_frame_of_a_gif():
    from ktransfer.image.header import MAX_PIXELS, header_pixels

    crafted = _frames_gif(12_000, 8)  # the 857 kB GIF that took 3.0 GB (ce06f12)
    assert len(crafted) < 1_000_000
    assert int(header_pixels(tf.constant(crafted))) == 8 * 12_000 ** 2 > MAX_PIXELS
    assert int(header_pixels(tf.constant(_frames_gif(100, 3)))) == 3 * 100 ** 2


SERVE_AND_MEASURE = """
import json, resource, sys
import numpy as np, tensorflow as tf
from PIL import Image
import io
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
buffer = io.BytesIO(); Image.new("RGB", (40, 40), (9, 9, 9)).save(buffer, format="PNG")
serve(image_bytes=tf.constant([buffer.getvalue()]))  # warm: traced, allocated
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    serve(image_bytes=tf.constant([open(sys.argv[2], "rb").read()]))
    refused = ""
except tf.errors.InvalidArgumentError as exc:
    refused = exc.message
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mb": (after - before) / 1024, "refused": refused}))
"""


def test_the_saved_model_refuses_a_gif_of_huge_frames_without_decoding_it(exported, tmp_path):
    """Peak memory of the export on a 1x1-screen GIF of 8 frames of 4000x4000 (128 million
    frame pixels), in a fresh process: refused, and the peak grows by less than 50 MB (on
    ce06f12 the request was decoded: 219 MB more, measured once here; 3.0 GB for frames of
    12000x12000)."""
    import json
    import subprocess
    import sys

    gif = tmp_path / "frames.gif"
    gif.write_bytes(_frames_gif(4000, 8))
    done = subprocess.run([sys.executable, "-c", SERVE_AND_MEASURE,
                           str(exported / "digits" / "1"), str(gif)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert "larger than 100 million pixels" in measured["refused"]
    assert measured["grew_mb"] < 50, measured


def test_onnx_without_its_extra_is_one_line_before_any_work(quickstart_run, tmp_path,
                                                            monkeypatch):
    """tf2onnx and onnxruntime come with the `onnx` extra; without them --formats=onnx says
    what to install, and nothing is exported."""
    real = importlib.util.find_spec
    monkeypatch.setattr(conversion.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(KtransferError, match=r"^--onnx: needs tf2onnx, which is not installed: "
                                             r"pip install 'ktransfer\[onnx\]'"):
        serving.export_saved(config.ExportConfig(run_dir=str(quickstart_run), formats=("onnx",),
                                                 export_dir=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
