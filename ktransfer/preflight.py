"""The pre-flight step: every check of names and files, once, before any work.

Config objects check values and their rules; what needs the registries or the file system
(data sources, backbone names, weights files, the run directory, output folders) is checked here,
so a typo or an unwritable folder stops a command in seconds with one line naming the flag,
before a model is built or anything is written. Every public library entry (train, tune,
find_lr, evaluate_saved, predict_saved, export_saved) calls its `check_*` function first, so a
notebook call is checked as the command line is.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktransfer.config import (
    AUTO_BATCH,
    EvaluateConfig,
    ExportConfig,
    LRFinderConfig,
    PredictConfig,
    ProbeRunConfig,
    RunConfig,
    SearchConfig,
    declared_groups,
    fields_with_registry,
)
from ktransfer.errors import ConfigError, first_line
from ktransfer.modality import BACKBONE_CHECKS, DEFAULT_BACKBONES, MODALITIES, Modality
from ktransfer.registry import import_object, registry_at
from ktransfer.runs import rundir
from ktransfer.runs.exportdir import check_export_dir
from ktransfer.tasks import TASKS, task_of

if TYPE_CHECKING:  # in annotations only: pre-flight runs before TensorFlow loads
    from ktransfer.tasks.task import Task

SOURCE_FLAGS = (("data", "data"), ("data", "val_data"), ("data", "test_data"),
                ("adapt", "target_data"), ("adapt", "target_eval_data"))


def check_names(cfg: Any) -> None:
    """Every registry-backed flag names a registered entry (modality first), and each backbone
    is a name its modality knows. Every registry a flag names is light, so the commands run
    this before TensorFlow loads (`cli.load`): a misspelt name is refused in a second."""
    run = cfg if isinstance(cfg, RunConfig) else getattr(cfg, "run", None)
    parts = [cfg] + ([run] if run is not None and run is not cfg else [])
    fields = [found for part in parts for found in fields_with_registry(part)]
    for flag, value, path in sorted(fields, key=lambda f: f[0] != "modality"):
        registry_at(path).check(value, flag)
    if isinstance(run, RunConfig):
        check_backbone_names(run, getattr(getattr(cfg, "probe", None), "backbones", ()))


def check_backbone_names(run: RunConfig, more: tuple[str, ...] = ()) -> None:
    """`--backbone` (and the probe's `--backbones`, `more`, as `NAME@WEIGHTS`) are backbones of
    the run's modality, by its light check (`modality.BACKBONE_CHECKS`); `auto` always is."""
    check = import_object(BACKBONE_CHECKS[run.data.modality])
    if run.model.backbone != "auto":
        check(run.model.backbone)
    for given in more:
        try:
            check(given.partition("@")[0])
        except ConfigError as exc:
            raise ConfigError("backbones", str(exc).removeprefix("--backbone: ")) from None


def check_modality_options(cfg: RunConfig) -> None:
    """No flag of another modality's own group is set (--aug_flip on a text run): it would be
    ignored, so it is a ConfigError naming it."""
    groups = declared_groups()
    for name in (m for m in MODALITIES if m != cfg.data.modality and m in groups):
        given, default = cfg.group(name), groups[name]()
        changed = [f.name for f in dataclasses.fields(given)
                   if getattr(given, f.name) != getattr(default, f.name)]
        if changed:
            raise ConfigError(changed[0], f"is a flag of --modality={name}; this run is "
                              f"--modality={cfg.data.modality} (remove it)")


def check_source(modality: Modality, spec: str, flag: str) -> None:
    """A `--data`-style string names something `modality` can read."""
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in modality.builtin:
            others = [m for m in MODALITIES if m != modality.name
                      and name in MODALITIES.get(m).builtin]
            hint = f"; it is a {others[0]} set: add --modality={others[0]}" if others else ""
            raise ConfigError(flag, f"unknown built-in {modality.name} dataset {name!r}; "
                              f"choose one of {', '.join(modality.builtin)}{hint}")
    elif spec.startswith("tfds:"):
        if not spec[5:]:
            raise ConfigError(flag, "give a dataset name, e.g. tfds:cifar10")
    else:
        modality.check_path(spec.split(":", 1)[1] if spec.startswith("folder:") else spec, flag)


def check_writable(path: str | os.PathLike, flag: str, folder: bool = True) -> None:
    """`path` (a folder, or a file when not `folder`) can be created or written: its nearest
    existing ancestor is a folder where a file can really be created (probed, so read-only
    file systems and permissions are both caught, for root too)."""
    path = Path(path).absolute()
    if path.exists():
        if folder and not path.is_dir():
            raise ConfigError(flag, f"{str(path)!r} exists and is not a folder")
        if not folder and path.is_dir():
            raise ConfigError(flag, f"{str(path)!r} is a folder; give a file path")
    probe_in = path if folder and path.is_dir() else path.parent
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ConfigError(flag, f"cannot create {str(path)!r}: {str(probe_in)!r} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ktransfer-probe-", dir=probe_in)
    except OSError as exc:
        raise ConfigError(flag, f"cannot write to {str(probe_in)!r} ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    os.close(fd)
    os.unlink(probe)


def check_model_path(path: str, flag: str = "model") -> None:
    """A run directory with a model.keras, or a .keras file."""
    if not path:
        raise ConfigError(flag, "is required (a run directory or a .keras file)")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model.keras")):
            raise ConfigError(flag, f"{path!r} has no model.keras; give a finished run "
                              "directory or a .keras file")
    elif not os.path.isfile(path):
        raise ConfigError(flag, f"{path!r} does not exist; give a run directory or a .keras file")


ACCUMULATE_UNTESTED = ("gradient accumulation with several replicas is built and tested for "
                       "strategies that merge replicas (mirrored and multi_worker without XLA); "
                       "not for --strategy=tpu or --jit_compile=on, where tf.distribute skips "
                       "that merge: use --accumulate=1 and a larger --batch_size there, which the "
                       "replicas share")


def accumulation_untested(cfg: RunConfig, replicas: int) -> bool:
    """Whether --accumulate meets a multi-replica setting it was not built for."""
    return cfg.train.accumulate > 1 and (
        cfg.distribute.strategy == "tpu"
        or (replicas > 1 and cfg.distribute.jit_compile == "on"))


def with_defaults(cfg: RunConfig, run_dir: bool = True) -> RunConfig:
    """`cfg` with its derived values fixed once, before anything else reads them: `--backbone=
    auto` as the modality's default backbone and (`run_dir`) the default run folder, named
    from the clock."""
    if cfg.model.backbone == "auto":
        MODALITIES.check(cfg.data.modality)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, backbone=DEFAULT_BACKBONES[cfg.data.modality]))
    return rundir.with_run_dir(cfg) if run_dir else cfg


def check_train(cfg: RunConfig, run_dir: bool = True) -> Modality:
    """Everything `train` needs before it starts; returns the run's modality."""
    check_names(cfg)
    cfg = with_defaults(cfg, run_dir=False)
    modality = MODALITIES.get(cfg.data.modality)
    annotations = task_of(cfg).annotations
    for group, flag in SOURCE_FLAGS:
        spec = getattr(getattr(cfg, group), flag)
        if spec and not (annotations is not None and annotations.claims(spec)):
            check_source(modality, spec, flag)
    check_modality_options(cfg)
    modality.check(cfg)
    task_of(cfg).check(cfg)
    if cfg.adapt.target_data:
        modality.check_features(cfg)
    check_tracking(cfg)
    several = 2 if cfg.distribute.strategy in ("mirrored", "multi_worker") else 1
    if accumulation_untested(cfg, several):
        raise ConfigError("accumulate", ACCUMULATE_UNTESTED)
    if cfg.train.auto_phases() and cfg.distribute.strategy == "multi_worker":
        flag = "lr" if "head" in cfg.train.auto_phases() else "fine_tune_lr"
        raise ConfigError(flag, "auto is not for multi-worker runs (each worker would test on "
                          "its own); run python -m ktransfer.find_lr once and give its rate")
    _check_init_from(cfg.model.init_from, "init_from")
    if run_dir:
        rundir.check(cfg)
        check_writable(rundir.run_path(cfg), "run_dir")
    if cfg.train.export_dir:
        check_export_dir(cfg.train.export_dir)
        check_writable(cfg.train.export_dir, "export_dir")
    return modality


def check_tracking(cfg: RunConfig) -> None:
    """--track=mlflow: MLflow is installed, and a local store (a folder, a SQLite file) can be
    written and read by MLflow itself, before the run folder exists (a read-only or corrupt
    store failed after it on ce06f12). A server store is first reached by the run."""
    if cfg.train.track != "mlflow":
        return
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("track", "mlflow is not installed: pip install 'ktransfer[tracking]'")
    folder, uri = cfg.train.tracking_folder(), cfg.train.tracking_store()
    if folder is not None:
        check_writable(folder, "tracking_uri")
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    elif not uri.startswith("sqlite:"):
        return
    client = importlib.import_module("mlflow.tracking").MlflowClient(tracking_uri=uri)
    try:
        client.get_experiment_by_name(cfg.train.experiment)
    except Exception as exc:  # MLflow's own errors (yaml, SQL, OS): one line, the cause named
        raise ConfigError("tracking_uri", f"{uri}: MLflow cannot read this store "
                          f"({type(exc).__name__}: {first_line(exc)[:160]}); repair or move "
                          "it, or give another --tracking_uri") from None


def _fixed_batch(cfg: RunConfig, command: str) -> None:
    if cfg.data.batch_size == AUTO_BATCH:
        raise ConfigError("batch_size", f"auto is found by `train`; give {command} a number "
                          "(the one a run's log or flags.cfg shows)")


def check_search(cfg: SearchConfig) -> Modality:
    """Everything `tune` needs before it starts; returns the modality."""
    check_names(cfg.tune)
    _fixed_batch(cfg.run, "tune")
    if cfg.tune.space == "adaptation" and not cfg.run.adapt.target_data:
        raise ConfigError("target_data", "--space=adaptation searches adaptation runs; give "
                          "the unlabelled target data")
    if cfg.tune.space == "adaptation":  # each alignment tried must suit the other flags
        for alignment in cfg.tune.hp_alignments:
            dataclasses.replace(cfg.run.adapt, mmd_alignment=alignment)
        for source in cfg.tune.hp_init_from:
            _check_init_from(source, "hp_init_from")
    run = cfg.run
    if cfg.tune.hp_init_from:  # the trials' source runs stand in for the train flags' own
        run = dataclasses.replace(run, model=dataclasses.replace(
            run.model, init_from=cfg.tune.hp_init_from[0]))
    modality = check_train(run, run_dir=False)
    modality.check_features(run)
    check_writable(Path(cfg.tune.directory) / cfg.tune.project, "directory")
    return modality


def check_probe(cfg: ProbeRunConfig) -> Modality:
    """Everything `probe` needs before it starts: every backbone with its weights, the data
    and the output folder; returns the modality."""
    check_names(cfg.probe)
    _fixed_batch(cfg.run, "probe")
    modality = None
    for _, run in cfg.candidates():
        modality = check_train(run, run_dir=False)
        modality.check_features(run)
    check_writable(cfg.probe.output_dir, "output_dir")
    assert modality is not None
    return modality


def check_find_lr(cfg: LRFinderConfig) -> Modality:
    """Everything `find_lr` needs before it starts; returns the modality."""
    _fixed_batch(cfg.run, "find_lr")
    modality = check_train(cfg.run, run_dir=False)
    check_writable(cfg.find.output_dir, "output_dir")
    return modality


def _check_init_from(path: str, flag: str) -> None:
    """A run (or model file) to start from exists."""
    if path and not os.path.exists(path):
        raise ConfigError(flag, f"{path!r} does not exist; give a run directory or a "
                          "model.keras")


def _check_data_path(spec: str, flag: str) -> None:
    """A --data value that is a path exists (its kind is known only once the model is)."""
    if spec and not spec.startswith(("builtin:", "tfds:")):
        path = spec.split(":", 1)[1] if spec.startswith("folder:") else spec
        if not os.path.exists(path):
            raise ConfigError(flag, f"{path!r} does not exist")


def _model_folder(path: str) -> str:
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def check_evaluate(cfg: EvaluateConfig) -> None:
    """Everything `evaluate` needs before it loads the model."""
    check_names(cfg)
    check_model_path(cfg.model)
    _check_data_path(cfg.data, "data")
    out = cfg.output_dir or os.path.join(_model_folder(cfg.model), f"evaluation-{cfg.split}")
    check_writable(out, "output_dir")


def check_predict(cfg: PredictConfig) -> None:
    """Everything `predict` needs before it loads the model."""
    check_names(cfg)
    check_model_path(cfg.model)
    if cfg.output:
        check_writable(cfg.output, "output", folder=False)
    if cfg.explain:
        check_writable(cfg.explain, "explain")
    if cfg.draw:
        task = _run_task(cfg.model)
        if task is not None and not task.geometry_entry:
            raise ConfigError("draw", f"{task.name} models have no answers in the image to "
                              "draw (detection has)")
        check_writable(cfg.draw, "draw")


def _run_task(folder: str) -> Task | None:
    """The task a run folder's task.json names; None for a model file, or where the file
    is unreadable (loading the run names it)."""
    state = Path(folder) / "task.json"
    if not state.is_file():
        return None
    try:
        name = json.loads(state.read_text(encoding="utf-8")).get("task", "")
    except (OSError, ValueError, AttributeError):
        return None
    return TASKS.get(name) if name in TASKS else None


def check_export(cfg: ExportConfig) -> None:
    """Everything `export` needs before it loads the model."""
    check_names(cfg)
    check_model_path(cfg.source, "run_dir" if cfg.run_dir else "model")
    check_export_dir(cfg.export_dir, cfg.version)
    check_writable(cfg.export_dir, "export_dir")
    if cfg.tflite_metadata and importlib.util.find_spec("mediapipe") is None:
        raise ConfigError("tflite_metadata", "writes the metadata with MediaPipe's tools, which "
                          "are not installed: pip install 'ktransfer[tflite-metadata]'")
