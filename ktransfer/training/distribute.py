"""tf.distribute strategy and precision policy for a run.

Batch sizes are global (split across replicas by Keras); the learning rate is never rescaled
behind the user's back. Under multi-worker training every worker runs the same steps (collective
ops need all of them), and only the chief writes to the real run directory: the others write to
a temporary folder that is deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

import tensorflow as tf

from ktransfer.config import DistributeConfig
from ktransfer.errors import ConfigError, TrainingError, first_line
from ktransfer.training.catalog import STRATEGIES

log = logging.getLogger(__name__)


@contextlib.contextmanager
def lost_workers_as_errors(strategy: str) -> Iterator[None]:
    """A multi-worker run whose other worker stopped (killed, its machine gone) ends in one
    line saying how to resume, not TensorFlow's `UnavailableError` traceback: the chief's
    collective ops fail once a peer's socket closes. Nothing is lost (every epoch is
    committed before the next starts)."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as exc:
        if strategy != "multi_worker":
            raise
        raise TrainingError(f"another worker of this multi-worker run stopped "
                            f"({first_line(exc)[:160]}); what was written is kept: start "
                            "every worker again with the same command and the run resumes "
                            "from its last finished epoch") from None


def configure_devices(cfg: DistributeConfig) -> None:
    """Splits the CPU into `cfg.cpu_devices` logical devices; must run before TF starts."""
    if not cfg.cpu_devices:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * cfg.cpu_devices)
    except RuntimeError:  # already initialized in this process (notebooks, tests)
        have = len(tf.config.list_logical_devices("CPU"))
        if have != cfg.cpu_devices:
            raise ConfigError("cpu_devices", f"TensorFlow already started with {have} CPU "
                              "device(s) in this process; set it in a fresh process") from None


def multi_worker_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    if not os.environ.get("TF_CONFIG"):  # checked before anything starts the TF runtime
        raise ConfigError("strategy", "multi_worker needs TF_CONFIG (the cluster spec) in "
                          "the environment of every worker; see docs/guides/scale.md")
    configure_devices(cfg)
    patch_keras_for_multi_worker()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as exc:
        raise ConfigError("strategy", f"multi_worker must start before TensorFlow runs "
                          f"anything in this process ({exc}); use a fresh process") from None


def tpu_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    configure_devices(cfg)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise ConfigError("strategy", f"no TPU found ({str(exc).splitlines()[0][:100]})"
                          ) from None
    return tf.distribute.TPUStrategy(resolver)


def mirrored_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    configure_devices(cfg)
    devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
               or [d.name for d in tf.config.list_logical_devices("CPU")])
    if len(devices) < 2:
        log.warning("--strategy=mirrored: only one device (%s); add GPUs or --cpu_devices=2",
                    devices[0])
    return tf.distribute.MirroredStrategy(devices)


def one_device_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    configure_devices(cfg)
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.OneDeviceStrategy(devices[0].name)


def auto_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    configure_devices(cfg)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return mirrored_strategy(cfg)
    # One device: TensorFlow's default strategy, i.e. plain Keras with no distribution.
    return tf.distribute.get_strategy()




def avoid_grappler_temporary_variables() -> None:
    """Turns off Grappler's arithmetic optimizer for the process. Its AddN rewrite gives
    temporary variables per-step names that can collide in Keras's training loop on CPU:
    fine-tuning MiniLM multi-label on 3,000 texts failed at the second fine-tuning epoch with
    `AlreadyExistsError: Resource __per_step_0/.../AddOpsRewrite_add_26/tmp_var` every time
    (tensorflow/tensorflow#23780, #33713); off, it trained at the same speed."""
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})


def make_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    """The strategy `cfg.strategy` names (see DistributeConfig), in a process whose graphs
    are optimized without the rewrite that breaks training (see below)."""
    avoid_grappler_temporary_variables()
    return STRATEGIES.get(cfg.strategy)(cfg)


def precision_policy(cfg: DistributeConfig) -> str:
    """The Keras dtype policy `cfg.mixed_precision` means on this machine."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability >= (7, 0):
            return "mixed_float16"
    return "float32"  # measured here: float16 is ~20x and bfloat16 ~2x slower on CPU


def is_chief() -> bool:
    """Whether this process writes outputs: always, except non-chief multi-worker workers."""
    spec = os.environ.get("TF_CONFIG")
    if not spec:
        return True
    task = json.loads(spec).get("task", {})
    cluster = json.loads(spec).get("cluster", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster


_PATCHED = False


def patch_keras_for_multi_worker() -> None:
    """Two fixes that let Keras 3 `fit` run under MultiWorkerMirroredStrategy on TF 2.21
    (keras-team/keras#20585):

    - the symbolic build reduced a PerReplica batch with MEAN (fails across workers); it only
      needs shapes and dtypes, so this takes one replica's batch instead;
    - metrics (scalars per replica) were reduced with axis=0 ("Invalid reduction dimension 0");
      scalars are reduced with axis=None.

    Both override private Keras functions; tests/test_distribute.py runs a real 2-process job so
    a Keras upgrade that changes them shows up.
    """
    global _PATCHED
    if _PATCHED:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues) else x, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if not tf_trainer._collective_all_reduce_multi_worker(strategy) or \
                reduction not in ("mean", "auto", "sum"):
            return original_reduce(values, strategy, reduction)

        def _reduce(v):
            if reduction == "sum":
                return strategy.reduce("SUM", v, axis=None)
            rank = v.values[0].shape.rank if hasattr(v, "values") else v.shape.rank
            return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

        return tree.map_structure(_reduce, values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _PATCHED = True
