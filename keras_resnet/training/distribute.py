"""Distribution strategies, and two fixes for Keras 3.15 under them.

`auto` picks MultiWorkerMirroredStrategy when TF_CONFIG is set,
MirroredStrategy when more than one GPU is visible, else one device.

Keras 3.15 / TF 2.21, as seen on this project's machines:
- BatchNormalization's moving statistics have aggregation "none", so under
  any multi-replica strategy each replica keeps its own copy:
  `AverageBatchNormStatistics` averages them.
- `model.fit` under MultiWorkerMirroredStrategy fails (keras-team/keras#20585,
  tensorflow/tensorflow#72388) in `_maybe_symbolic_build` (reduces the first
  data batch across workers) and `reduce_per_replica` (reduces scalar logs
  with axis=0). `patch_keras_for_multi_worker` bypasses both, only when a
  multi-worker strategy is made, on any Keras whose trainer still has the two
  as 3.15 has them; on one that changed them, a multi-worker run is refused
  in one line before training instead of failing or training wrong.
"""

import inspect
import json
import os
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from keras_resnet.errors import ArgumentError

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """auto: MultiWorkerMirrored with TF_CONFIG, Mirrored with >1 GPU, else one device."""
    if name not in STRATEGIES:
        raise ArgumentError("strategy", name, f"must be one of {', '.join(STRATEGIES)}")
    if name == "auto" and os.environ.get("TF_CONFIG"):
        name = "multi_worker"
    if name == "multi_worker":
        # Before anything lists logical devices: that initialises TF, and
        # collectives must be configured before it.
        patch_keras_for_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # Without GPUs, mirror over the logical CPUs (tests split the CPU in
        # two). Reducing on one device avoids CPU collectives, whose instance
        # keys clash between two strategies made in one process.
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")],
            cross_device_ops=tf.distribute.ReductionToOneDevice(),
        )
    return tf.distribute.OneDeviceStrategy((gpus or tf.config.list_logical_devices("CPU"))[0].name)


def task() -> tuple[str, int] | None:
    """(task type, index) from TF_CONFIG, or None without one."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    if "task" not in spec:
        return None
    return spec["task"].get("type"), int(spec["task"].get("index", 0))


def is_chief() -> bool:
    """The chief writes outputs: task "chief", or worker 0 without a chief."""
    current = task()
    if current is None:
        return True
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    kind, index = current
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


def worker_dir(model_dir: str) -> str:
    """Where this worker writes: model_dir for the chief, else its own
    scratch folder in it (two workers' BackupAndRestore must not share a
    folder, and each worker must find its own backup to resume)."""
    if is_chief():
        return model_dir
    kind, index = task()
    return os.path.join(model_dir, "workers", f"{kind}{index}")


class AverageBatchNormStatistics(keras.callbacks.Callback):
    """Averages BN moving statistics over replicas before they are used.

    Keras 3.15 creates them with aggregation "none", and under a distribution
    strategy each replica then updates its own copy with its own batches:
    replicas drift apart, evaluation mixes them and saving keeps replica 0's.
    The mean of the replicas' statistics is given to every replica before
    each validation, at each epoch's end (before checkpoints) and at the end.
    """

    def __init__(self):
        super().__init__()
        self._sync: Callable[[], Any] | None = None

    def _average(self) -> None:
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync == 1:
            return
        if self._sync is None:
            stats = [
                v for v in self.model.non_trainable_variables
                if v.path.endswith(("moving_mean", "moving_variance"))
            ]

            def average() -> None:
                context = tf.distribute.get_replica_context()
                for v in stats:
                    v.assign(context.all_reduce("mean", tf.identity(v.value)))

            self._sync = tf.function(lambda: strategy.run(average))
        self._sync()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._average()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._average()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._average()


# What patch_keras_for_multi_worker replaces or calls in Keras' TF trainer,
# with the parameters it relies on (as Keras 3.15 has them).
_TRAINER_INTERNALS = {
    "reduce_per_replica": ("values", "strategy", "reduction"),
    "TensorFlowTrainer._maybe_symbolic_build": ("self", "iterator", "data_batch"),
    "TensorFlowTrainer._symbolic_build": ("self", "iterator", "data_batch"),
}


def check_trainer_internals(tf_trainer: Any) -> None:
    """Raises ArgumentError (--strategy) unless Keras' trainer has what the
    multi-worker patch replaces, as Keras 3.15 has it: the patch does what
    those functions do, minus the failure, so it holds wherever they are
    unchanged, and a Keras that changed them is refused, never half-patched."""
    changed = []
    for path, parameters in _TRAINER_INTERNALS.items():
        target = tf_trainer
        for name in path.split("."):
            target = getattr(target, name, None)
        if target is None or tuple(inspect.signature(target).parameters) != parameters:
            changed.append(path)
    if changed:
        raise ArgumentError(
            "strategy", "multi_worker",
            f"needs the Keras trainer that its fix of keras-team/keras#20585 replaces, and "
            f"Keras {keras.__version__} changed {', '.join(changed)} "
            f"(keras.src.backend.tensorflow.trainer); install keras==3.15.*",
        )


def patch_keras_for_multi_worker() -> None:
    """Makes `model.fit` work under MultiWorkerMirroredStrategy (Keras 3.15
    fails there); refuses a Keras whose trainer it cannot patch."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_keras_resnet_patched", False):
        return
    check_trainer_internals(tf_trainer)
    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy
        ):
            return original_reduce(values, strategy, reduction)

        def reduce(v: Any) -> Any:
            if not isinstance(v, tf.distribute.DistributedValues):
                return v
            local = strategy.experimental_local_results(v)[0]
            # Scalars (the logs) have no axis 0 to reduce over.
            return strategy.reduce("MEAN", v, axis=0 if local.shape.rank else None)

        return tf.nest.map_structure(reduce, values)

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if strategy is None or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy
        ):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                # Building needs shapes only: a local batch, not a reduction.
                data_batch = tf.nest.map_structure(
                    lambda x: strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues) else x,
                    batch,
                )
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer._keras_resnet_patched = True
