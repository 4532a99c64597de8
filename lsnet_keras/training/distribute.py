"""The tf.distribute strategy of a run and which worker writes files.

Example:
    >>> make_strategy("default").num_replicas_in_sync
    1
"""

import os

import tensorflow as tf

from lsnet_keras.training.config import STRATEGIES, TrainingError


def make_strategy(name="default", cpu_replicas=0, tpu=None):
    """The tf.distribute strategy for `name` (call before any other TensorFlow work).

    default: one device. mirrored: every local GPU (or `cpu_replicas` logical CPUs).
    multiworker: MultiWorkerMirroredStrategy, hosts from TF_CONFIG. tpu: TPUStrategy.

    Example:
        >>> make_strategy("default").num_replicas_in_sync
        1
    """
    if name not in STRATEGIES:
        raise TrainingError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        config = [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
        tf.config.set_logical_device_configuration(cpu, config)
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainingError("--strategy multiworker needs TF_CONFIG (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        except (ValueError, tf.errors.OpError) as err:
            where = f"--tpu {tpu}" if tpu else "no local TPU (give --tpu NAME)"
            raise TrainingError(f"--strategy tpu: {where}: {err}") from None
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """True on the one worker that writes files (always true without multiple workers).

    Example:
        >>> is_chief(tf.distribute.get_strategy())
        True
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
