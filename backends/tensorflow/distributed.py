"""Data-parallel training for the TensorFlow backend through ``tf.distribute``:

- ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``: one replica (one device) per worker process;
- ``MirroredStrategy``: one process driving several local GPUs, one replica each.

The core already gives every replica its own shard of every micro-batch (``tl.batching.
accumulation_split``), so nothing here shards or rebatches data: a process's tf.data pipeline yields
its replicas' shards in turn, through ``distribute_datasets_from_function`` with auto-sharding off.
The loss and gradient arithmetic that keeps a step equal to a single-device step lives in
``tl_tensorflow.model.BertClassifier._grouped_train_step``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from tl.distributed import host_tasks, world_from_env
from tl.errors import TLError

# keras and tensorflow come through tl_tensorflow.model, which selects Keras' backend before importing it.
from tl_tensorflow.model import tf

_STRATEGY: tf.distribute.Strategy | None = None


def strategy() -> tf.distribute.Strategy | None:
    """The strategy ``setup`` made for this process, if any."""
    return _STRATEGY


def scope():
    """``strategy.scope()`` in a distributed run; a no-op otherwise."""
    return _STRATEGY.scope() if _STRATEGY is not None else contextlib.nullcontext()


def _one_device_per_worker() -> None:
    """MultiWorkerMirroredStrategy makes a replica of every visible GPU; tl's batches are sharded per
    worker, so each worker keeps one GPU (the one matching its place on the host), like torchrun."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    index, count = host_tasks(os.environ.get("TF_CONFIG", "{}"))
    if count > len(gpus) and "CUDA_VISIBLE_DEVICES" not in os.environ:  # else each may see its own GPU
        raise TLError(f"TF_CONFIG puts {count} workers on this host, which has {len(gpus)} GPU(s); "
                      "run at most one worker per GPU (or give each its own with CUDA_VISIBLE_DEVICES)")
    if len(gpus) > 1:
        try:
            tf.config.set_visible_devices(gpus[index % len(gpus)], "GPU")
        except RuntimeError as exc:  # the runtime is already initialized
            raise TLError(f"cannot restrict this worker to one GPU: {exc}") from None


def setup(replicas: int = 1, devices: list[str] | None = None) -> tf.distribute.Strategy | None:
    """Multi-worker (TF_CONFIG): join the cluster (blocks until every worker has started). Else, with
    ``replicas`` > 1: a MirroredStrategy over that many local GPUs (or the named ``devices``). Call
    once per process, after the thread settings and before TensorFlow runs any op; a no-op for one
    device."""
    global _STRATEGY
    world = world_from_env()
    if _STRATEGY is not None:
        return _STRATEGY
    if world.mode != "multi-worker":
        if replicas > 1 or devices:
            _STRATEGY = mirrored(replicas, devices)
        return _STRATEGY
    _one_device_per_worker()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as exc:
        raise TLError(f"could not join the TF_CONFIG cluster as worker {world.rank} of {world.size}: {exc}") from None
    if strategy.num_replicas_in_sync != world.size:
        raise TLError(
            f"MultiWorkerMirroredStrategy has {strategy.num_replicas_in_sync} replicas for {world.size} workers; "
            "tl trains one replica per worker process"
        )
    _STRATEGY = strategy
    return strategy


def mirrored(replicas: int, devices: list[str] | None = None) -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over the first ``replicas`` GPUs (or ``devices``, e.g. logical CPUs in tests).
    NCCL all-reduce where the GPUs support it (TensorFlow's default cross-device ops)."""
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < replicas:
            raise TLError(f"the plan asks for {replicas} GPUs but TensorFlow sees {len(gpus)}")
        devices = [g.name for g in gpus[:replicas]]
    strategy = tf.distribute.MirroredStrategy(devices)
    if strategy.num_replicas_in_sync != len(devices):
        raise TLError(f"MirroredStrategy made {strategy.num_replicas_in_sync} replicas for {len(devices)} devices")
    return strategy


def reset() -> None:
    """Forget the strategy (tests that train several ways in one process)."""
    global _STRATEGY
    _STRATEGY = None


def distribute(strategy: tf.distribute.Strategy,
               make: Callable[[], tf.data.Dataset]) -> tf.distribute.DistributedDataset:
    """Each worker's own dataset (``make()``), element for element: no auto-sharding (the core has
    sharded already) and no rebatching (an element is this worker's per-replica batch)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        if input_context.num_input_pipelines != world_from_env().size:
            raise TLError("expected one input pipeline per worker process")
        return make().with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)
