"""`--task=detection`: the annotation readers, their one-line errors, the anchors, the head's
initialisation, and a tiny detector trained, scored, predicted and served end to end."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ktransfer import config, preflight
from ktransfer.deploy.prediction import predict_saved
from ktransfer.deploy.serving import export_saved
from ktransfer.errors import ConfigError, DataError
from ktransfer.reporting.evaluation import evaluate_saved
from ktransfer.tasks.detection import DETECTION
from ktransfer.tasks.detection.anchors import anchor_grid, decode_boxes, encode_boxes, encoder
from ktransfer.tasks.detection.readers import READERS
from ktransfer.training import train

from conftest import train_killed_after, write_digit_boxes


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_digit_boxes(tmp_path_factory.mktemp("digits"), n=120)


def _as_table(coco_file, path):
    """The same boxes as a table: one row per box, a row with no box for a negative."""
    found = json.loads(coco_file.read_text())
    names = {c["id"]: c["name"] for c in found["categories"]}
    rows = []
    for image in found["images"]:
        mine = [a for a in found["annotations"] if a["image_id"] == image["id"]]
        for a in mine:
            x, y, w, h = a["bbox"]
            rows.append([f"images/{image['file_name']}", names[a["category_id"]], x, y, x + w,
                         y + h])
        if not mine:
            rows.append([f"images/{image['file_name']}", "", "", "", "", ""])
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["file", "label", "xmin", "ymin", "xmax", "ymax"], *rows])
    return path


def test_coco_and_a_table_of_boxes_give_the_same_examples(coco):
    table = _as_table(coco, coco.parent / "boxes.csv")
    assert READERS.claims(str(coco)) and READERS.claims(str(table))
    a, b = READERS.read(str(coco), "data")["all"], READERS.read(str(table), "data")["all"]
    assert a.class_names == b.class_names == ("digit0", "digit1", "digit2")
    assert a.files == b.files and len(a.files) == 120
    np.testing.assert_allclose(a.targets, b.targets, atol=1e-6)
    assert (a.targets[::10, :, 0] < 0).all(axis=-1).any()  # negatives kept, all padding


def _as_folders(coco_file, root):
    """The same boxes as a Pascal VOC folder and a YOLO folder (images copied into each)."""
    import shutil

    found = json.loads(coco_file.read_text())
    names = {c["id"]: c["name"] for c in found["categories"]}
    voc, yolo = root / "voc", root / "yolo"
    for folder in (voc / "Annotations", voc / "JPEGImages", yolo / "images", yolo / "labels"):
        folder.mkdir(parents=True)
    (yolo / "data.yaml").write_text("names: [" + ", ".join(names.values()) + "]\n")
    for image in found["images"]:
        name = image["file_name"]
        for folder in (voc / "JPEGImages", yolo / "images"):
            shutil.copy(coco_file.parent / "images" / name, folder / name)
        mine = [a for a in found["annotations"] if a["image_id"] == image["id"]]
        objects = "".join(
            f"<object><name>{names[a['category_id']]}</name><bndbox><xmin>{a['bbox'][0]}</xmin>"
            f"<ymin>{a['bbox'][1]}</ymin><xmax>{a['bbox'][0] + a['bbox'][2]}</xmax>"
            f"<ymax>{a['bbox'][1] + a['bbox'][3]}</ymax></bndbox></object>" for a in mine)
        (voc / "Annotations" / f"{name[:-4]}.xml").write_text(
            f"<annotation><filename>{name}</filename>{objects}</annotation>")
        size = image["width"]
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / size:.7f} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / size:.7f} {a['bbox'][2] / size:.7f} "
                 f"{a['bbox'][3] / size:.7f}" for a in mine]
        if lines:
            (yolo / "labels" / f"{name[:-4]}.txt").write_text("\n".join(lines) + "\n")
    return voc, yolo


def test_the_four_formats_give_the_same_examples(coco, tmp_path):
    """COCO JSON, a table of boxes, a Pascal VOC folder and a YOLO folder of the same boxes
    read to the same class names, images (by name) and targets."""
    voc, yolo = _as_folders(coco, tmp_path)
    table = _as_table(coco, coco.parent / "boxes4.csv")
    read = [READERS.read(str(p), "data")["all"] for p in (coco, table, voc, yolo)]
    assert all(READERS.claims(str(p)) for p in (coco, table, voc, yolo))
    for other in read[1:]:
        assert other.class_names == read[0].class_names
        assert [f.split("/")[-1] for f in other.files] == [f.split("/")[-1]
                                                          for f in read[0].files]
        np.testing.assert_allclose(other.targets, read[0].targets, atol=1e-5)
    label = yolo / "labels" / "001.txt"
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=rf"^--data: {label}:1: class 7 is not one of the 3"):
        READERS.read(str(yolo), "data")
    xml = voc / "Annotations" / "002.xml"
    xml.write_text("<annotation><filename>002.png</filename><object><name>digit1</name>"
                   "<bndbox><xmin>4</xmin></bndbox></object></annotation>")
    with pytest.raises(DataError, match=rf"^--data: {xml}: object 0: bndbox needs numbers"):
        READERS.read(str(voc), "data")


def _broken(coco, tmp_path, change):
    found = json.loads(coco.read_text())
    change(found)
    path = coco.parent / f"broken{abs(hash(str(change))) % 10**6}.json"
    path.write_text(json.dumps(found, indent=1))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda f: f["annotations"][3].update(bbox=[100, 10, 60, 20]),
     r"annotations\[3\]: box .* lies outside its 128 x 128 image"),
    (lambda f: f["annotations"][0].update(bbox=[10, 10, 0, 5]),
     r"annotations\[0\]: box .* has no area"),
    (lambda f: f["annotations"][1].update(category_id=9),
     r"annotations\[1\]: category_id 9 is not a category of the file"),
    (lambda f: f["images"][2].update(file_name="gone.png"),
     r"images\[2\]: image file 'gone.png' not found"),
    (lambda f: f["annotations"][2].update(bbox="wide"),
     r"annotations\[2\]: bbox 'wide' is not \[x, y, width, height\]"),
    (lambda f: f.update(categories=[]), r"no categories"),
])
def test_every_bad_coco_annotation_is_one_line_naming_its_place(coco, tmp_path, change,
                                                                message):
    path = _broken(coco, tmp_path, change)
    with pytest.raises(DataError, match=f"^--data: {path}: {message}") as caught:
        READERS.read(str(path), "data")
    assert "\n" not in str(caught.value)


def test_malformed_json_and_bad_table_rows_name_their_line(coco, tmp_path):
    path = coco.parent / "cut.json"
    path.write_text(coco.read_text()[:500] + "\n\n")
    with pytest.raises(DataError, match=rf"^--data: {path}:1: not JSON"):
        READERS.read(str(path), "data")
    table = coco.parent / "bad.csv"
    table.write_text("file,label,xmin,ymin,xmax,ymax\nimages/000.png,digit1,1,2,30,40\n"
                     "images/001.png,digit2,1,two,30,40\n")
    with pytest.raises(DataError, match=rf"^--data: {table}:3: xmin, ymin, xmax, ymax must be "
                       "numbers"):
        READERS.read(str(table), "data")


def test_encoded_boxes_decode_back_to_the_true_boxes():
    """keras-hub's label encoder and this package's decoding agree: each anchor matched to a
    box decodes (from its target offsets) to exactly that box."""
    targets = np.array([[[1, 0.10, 0.20, 0.45, 0.50], [0, 0.5, 0.5, 0.9, 0.8],
                         [-1, -1, -1, -1, -1]]], np.float32)
    encoded = encode_boxes(tf.constant(targets), 128, encoder()).numpy()[0]
    anchors = anchor_grid(128)
    matched = encoded[:, 4] >= 0
    assert matched.sum() >= 2 and set(encoded[matched, 4]) == {0.0, 1.0}
    decoded = keras.ops.convert_to_numpy(decode_boxes(encoded[matched, :4], anchors[matched]))
    truth = np.where(encoded[matched, 4:5] == 1, targets[0, 0, 1:], targets[0, 1, 1:])
    np.testing.assert_allclose(decoded, truth, atol=1e-5)


def test_the_head_starts_every_anchor_at_the_focal_prior(coco):
    """Every class of every anchor starts at probability 0.01 (RetinaNet's initialisation;
    keras-hub's detector puts the prior on the box head and starts the classes near 0.5)."""
    cfg = config.build(data=str(coco), task="detection", backbone="efficientnet_lite0",
                       weights="none", image_size=64, detector_filters=16, detector_depth=1)
    from ktransfer.modality import MODALITIES

    model = MODALITIES.get("image").build(cfg, 3).model
    out = keras.ops.convert_to_numpy(model(np.random.default_rng(0).uniform(
        0, 255, (2, 64, 64, 3)).astype(np.float32)))
    probabilities = 1 / (1 + np.exp(-out[..., 4:7]))
    assert out.shape == (2, anchor_grid(64).shape[0], 4 + 3 + 4)
    assert abs(float(np.median(probabilities)) - 0.01) < 0.005
    np.testing.assert_allclose(out[0, :, 7:], anchor_grid(64), atol=1e-6)


def test_detection_refuses_what_needs_one_class_per_image(coco):
    for flag, value in (("train_per_class", 5), ("aug_mixup", 0.2), ("image_size", 100)):
        cfg = config.build(data=str(coco), task="detection", **{flag: value})
        with pytest.raises(ConfigError, match=f"^--{flag}: "):
            preflight.check_train(cfg)
    with pytest.raises(ConfigError, match="^--task: tune, probe and domain adaptation need"):
        preflight.check_search(config.SearchConfig(
            run=config.build(data=str(coco), task="detection"), tune=config.TuneConfig()))
    bad = config.build(data=str(coco), task="detection", backbone="small_cnn", weights="none",
                       image_size=64)
    with pytest.raises(ConfigError, match="^--backbone: .* no feature map at stride 8"):
        from ktransfer.modality import MODALITIES

        MODALITIES.get("image").build(bad, 3)


@pytest.fixture(scope="module")
def detector(coco, tmp_path_factory):
    cfg = config.build(data=str(coco), task="detection", backbone="efficientnet_lite0",
                       weights="imagenet", image_size=128, batch_size=16, epochs=8,
                       fine_tune_epochs=0, lr_schedule="constant", lr=1e-3,
                       detector_filters=32, detector_depth=1, aug_flip="horizontal",
                       monitor="val_map", verbose=0, tensorboard=False, report=True,
                       run_dir=str(tmp_path_factory.mktemp("det") / "run"))
    return train(cfg)


def test_a_tiny_detector_beats_the_mean_boxes(detector):
    """From 84 training images, 8 frozen-backbone epochs find the digits: the test mAP clears
    every class's mean box put in every image (about 0.00) by 0.1."""
    quality = detector.metrics["quality"]
    assert quality["metric"] == "mAP@[.50:.95]"
    assert quality["value"] > quality["baseline"] + 0.1, quality
    assert detector.metrics["test"]["ap50"] > 0.3
    report = (detector.run_dir / "report.html").read_text()
    assert "AP@[.50:.95] per class" in report and "digit2" in report
    assert 'alt="precision-recall curves"' in report
    assert 'alt="most missed and false boxes"' in report


def test_a_crop_keeps_the_boxes_whose_centre_it_holds():
    """--aug_crop: boxes are moved into the crop's fractions and clipped; one whose centre
    the window leaves out is dropped (its class becomes -1)."""
    from ktransfer.tasks.detection.geometry import GEOMETRY

    target = tf.constant([[0, 0.1, 0.1, 0.3, 0.3], [1, 0.5, 0.5, 0.9, 0.7],
                          [-1, -1, -1, -1, -1]], tf.float32)
    window = tf.constant([0.4, 0.4, 0.5, 0.5])  # top, left, height, width
    np.testing.assert_allclose(GEOMETRY.cropped(target, window).numpy(), [
        [-1, -1, -1, -1, -1], [1, 0.2, 0.2, 1.0, 0.6], [-1, -1, -1, -1, -1]], atol=1e-6)


def test_image_errors_match_boxes_by_class_and_overlap():
    """A found box counts for a true one of its class at IoU >= 0.5, once; anything else is
    a miss (the true box) and a false box (the found one)."""
    from ktransfer.tasks.detection.scoring import image_errors

    truth = np.array([[0, 0.1, 0.1, 0.5, 0.5], [1, 0.5, 0.5, 0.9, 0.9], [-1, -1, -1, -1, -1]])
    exact = np.array([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]])
    assert image_errors(truth, exact, np.array([0, 1])) == (0, 0)
    assert image_errors(truth, exact, np.array([1, 0])) == (2, 2)  # right places, wrong classes
    twice = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.5]])
    assert image_errors(truth, twice, np.array([0, 0])) == (1, 1)  # one box of two is matched
    shifted = np.array([[0.3, 0.3, 0.7, 0.7]])  # IoU 1/7 with the first
    assert image_errors(truth, shifted, np.array([0])) == (2, 1)
    assert image_errors(truth, np.zeros((0, 4)), np.zeros(0)) == (2, 0)


def test_the_evaluation_keeps_precision_recall_curves_and_the_worst_images(detector):
    """evaluation.json: COCO's interpolated precision at IoU 0.5 (never rising with recall)
    for each class, and the worst images, worst first, with their boxes to draw."""
    summary = json.loads((detector.run_dir / "report" / "evaluation.json").read_text())
    curves = summary["precision_recall"]
    assert len(curves["recall"]) == 101 and len(curves["precision"]) == 3
    for precision in curves["precision"]:
        shown = [v for v in precision if v >= 0]
        assert shown and all(a >= b for a, b in zip(shown, shown[1:], strict=False))
    worst = summary["mistakes"]
    errors = [sum(int(n) for n in m["how"].replace(",", "").split() if n.isdigit())
              for m in worst]
    assert worst and errors == sorted(errors, reverse=True) and errors[-1] > 0
    assert {"detections", "truth"} <= set(worst[0]["drawn"])


def test_val_map_is_scored_every_epoch_and_monitored(detector):
    """--monitor=val_map: pycocotools scores each epoch's validation pass; history.csv holds
    it, and its last value is the final model's validation mAP."""
    with open(detector.run_dir / "history.csv") as f:
        history = list(csv.DictReader(f))
    values = [float(row["val_map"]) for row in history]
    assert len(values) == 8 and all(0.0 <= v <= 1.0 for v in values) and max(values) > 0
    assert values[-1] == pytest.approx(detector.metrics["val"]["map"], abs=1e-6)
    assert "val_ap50" in history[0]


def _predicted(run, files, fmt="json", **flags):
    return predict_saved(config.build_command(config.PredictConfig, model=str(run), format=fmt,
                                              **flags), [str(f) for f in files])


def test_predict_gives_boxes_in_the_pixels_of_each_image_as_given(detector, coco, tmp_path):
    """The boxes predict writes are the model's (fractions of the squashed input) times each
    image's own width and height: a 256 x 96 copy of a test image gets x scaled by 256 and y
    by 96, not by the input's 128."""
    from ktransfer.deploy.prediction import predict
    from ktransfer.deploy.saving import open_classifier
    from ktransfer.image.prediction import read_images

    wide = tmp_path / "wide.png"
    Image.open(sorted((coco.parent / "images").glob("*.png"))[3]).resize((256, 96)).save(wide)
    found = json.loads(_predicted(detector.run_dir, [wide], min_score="0.05"))[0]["detections"]
    clf = open_classifier(detector.run_dir)
    model = predict(clf.model, clf.feed, read_images([str(wide)]), clf.class_names,
                    state={**clf.state, "min_score": 0.05})[0].extra["detections"]
    assert found and len(found) == len(model)
    for pixels, fractions in zip(found, model, strict=True):
        assert pixels["label"] == fractions["label"] and pixels["score"] == fractions["score"]
        np.testing.assert_allclose([pixels[k] for k in ("xmin", "ymin", "xmax", "ymax")],
                                   [fractions["xmin"] * 256, fractions["ymin"] * 96,
                                    fractions["xmax"] * 256, fractions["ymax"] * 96], atol=0.01)


def test_predict_min_score_csv_and_drawn_boxes(detector, coco, tmp_path):
    """--min_score keeps the boxes at or above it (the run's 0.3 unless given); CSV has a row
    per box and a row for an image with none; --draw writes each image, its own size, with
    the boxes drawn on it."""
    files = sorted((coco.parent / "images").glob("*.png"))[:6]
    low = json.loads(_predicted(detector.run_dir, files, min_score="0.05"))
    high = json.loads(_predicted(detector.run_dir, files, min_score="0.5"))
    for few, many in zip(high, low, strict=True):
        assert all(d["score"] >= 0.5 for d in few["detections"])
        assert all(d["score"] >= 0.05 for d in many["detections"])
        assert len(few["detections"]) <= len(many["detections"])
    rows = list(csv.DictReader(_predicted(detector.run_dir, files, "csv", min_score="0.05")
                               .splitlines()))
    assert list(rows[0]) == ["file", "label", "score", "xmin", "ymin", "xmax", "ymax"]
    assert len(rows) == sum(max(1, len(r["detections"])) for r in low)
    _predicted(detector.run_dir, files[:2], min_score="0.05", draw=str(tmp_path / "drawn"))
    for f in files[:2]:
        drawn = np.asarray(Image.open(tmp_path / "drawn" / f"{f.stem}.png"))
        original = np.asarray(Image.open(f).convert("RGB"))
        assert drawn.shape == original.shape and (drawn != original).any()


def test_predict_refuses_a_bad_min_score_and_draw_without_boxes(detector, quickstart_run,
                                                                tmp_path):
    for value, said in (("abc", "must be a float"), ("2", "must be in")):
        with pytest.raises(ConfigError, match=f"^--min_score: {said}"):
            _predicted(detector.run_dir, [], min_score=value)
    with pytest.raises(ConfigError, match="^--draw: single_label models have no answers in "
                                          "the image"):
        _predicted(quickstart_run, [], draw=str(tmp_path / "drawn"))


@pytest.mark.slow  # an export and a fresh signature trace: make test-slow
def test_a_detector_evaluates_predicts_and_serves_the_same_boxes(detector, coco, tmp_path):
    run = detector.run_dir
    summary, _ = evaluate_saved(config.EvaluateConfig(model=str(run)))
    for key in ("map", "ap50", "ap75", "ap_small", "ap_medium", "ar100"):
        assert summary[key] == pytest.approx(detector.metrics["test"][key], abs=1e-6), key
    assert [r["class"] for r in summary["per_class"]] == ["digit0", "digit1", "digit2"]
    assert sum(r["boxes"] for r in summary["per_class"]) > 0
    files = sorted((coco.parent / "images").glob("*.png"))[:4]
    rows = json.loads(predict_saved(config.PredictConfig(model=str(run), format="json"),
                                    [str(f) for f in files]))
    version = export_saved(config.ExportConfig(run_dir=str(run),
                                               export_dir=str(tmp_path / "m")))
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        image_bytes=tf.constant([f.read_bytes() for f in files]))
    for i, row in enumerate(rows):
        count = int(served["num_detections"][i])
        assert count == len(row["detections"])
        np.testing.assert_allclose(served["boxes"][i, :count].numpy() * 128,  # 128 px images
                                   [[d[k] for k in ("ymin", "xmin", "ymax", "xmax")]
                                    for d in row["detections"]], atol=0.13)
        assert [n.decode() for n in served["class_names"][i, :count].numpy()] == \
            [d["label"] for d in row["detections"]]
    assert DETECTION.output_key == "detections"


@pytest.mark.slow  # two conversions and their scoring (about 60 s): make test-slow
def test_the_tflite_copy_is_what_mediapipes_object_detector_runs(detector, coco, tmp_path):
    """--tflite=float32 --tflite_metadata --onnx: both copies end in non-max suppression and
    score within 0.02 mAP of the Keras model on the run's test split; MediaPipe's own
    ObjectDetector loads the TFLite file with nothing but its metadata and finds predict's
    boxes (labels, scores to 1e-3, corners to 2 px: MediaPipe rounds the origin and the size
    down to whole pixels)."""
    import mediapipe
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    version = export_saved(config.ExportConfig(
        run_dir=str(detector.run_dir), export_dir=str(tmp_path / "m"), tflite="float32",
        tflite_metadata=True, onnx=True))
    report = json.loads((version / "conversions.json").read_text())
    for name in ("tflite", "onnx"):
        assert report[name]["within_limit"] and report[name]["drop"] <= 0.02, report
        assert report[name]["outputs"] == ["detection_boxes", "detection_classes",
                                           "detection_scores", "num_detections"]
    files = sorted((coco.parent / "images").glob("*.png"))[:3]
    rows = json.loads(_predicted(detector.run_dir, files))
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_buffer=(version / "model.tflite").read_bytes()),
        score_threshold=0.3, max_results=100)
    with vision.ObjectDetector.create_from_options(options) as found:
        for f, row in zip(files, rows, strict=True):
            image = mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB,
                                    data=np.asarray(Image.open(f).convert("RGB")))
            seen = found.detect(image).detections
            assert [d.categories[0].category_name for d in seen] == \
                [d["label"] for d in row["detections"]]
            for mine, theirs in zip(row["detections"], seen, strict=True):
                box = theirs.bounding_box
                assert theirs.categories[0].score == pytest.approx(mine["score"], abs=1e-3)
                np.testing.assert_allclose(
                    [box.origin_x, box.origin_y, box.origin_x + box.width,
                     box.origin_y + box.height],
                    [mine[k] for k in ("xmin", "ymin", "xmax", "ymax")], atol=2.0)


@pytest.mark.slow  # a kill and resume through both phases: make test-slow
def test_a_detector_resumes_after_a_kill_in_fine_tuning(coco, tmp_path, monkeypatch):
    """Killed in its first fine-tuning epoch (epoch 3 of 2 + 2), the same command resumes and
    runs every epoch once; the frozen phase's head is not trained again."""
    cfg = config.build(data=str(coco), task="detection", backbone="efficientnet_lite0",
                       weights="imagenet", image_size=64, batch_size=16, epochs=2,
                       fine_tune_epochs=2, detector_filters=16, detector_depth=1,
                       verbose=0, tensorboard=False, report=False,
                       run_dir=str(tmp_path / "run"))
    train_killed_after(3, cfg, monkeypatch)
    result = train(cfg)
    history = (result.run_dir / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in history] == [
        ["1", "head"], ["2", "head"], ["3", "fine_tune"], ["4", "fine_tune"]]
    assert result.metrics["epochs"] == {"head": 2, "fine_tune": 2}
