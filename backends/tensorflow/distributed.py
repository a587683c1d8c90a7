"""Data-parallel training for the TensorFlow backend through ``tf.distribute``:

- ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``: one replica (one device) per worker process;
- ``MirroredStrategy``: one process driving several local GPUs, one replica each.

``TensorflowBackend.configure`` makes the strategy (``create_strategy``) and holds it; it is passed
explicitly to whatever needs it (building the model under its scope, training, ``distribute``).
The core already gives every replica its own shard of every micro-batch (``tl.data.batching.
accumulation_split``), so nothing here shards or rebatches data: a process's tf.data pipeline yields
its replicas' shards in turn, through ``distribute_datasets_from_function`` with auto-sharding off.
The loss and gradient arithmetic that keeps a step equal to a single-device step lives in
``tl_tensorflow.network.Classifier._grouped_train_step``.

The TF_CONFIG helpers need no TensorFlow; the strategy functions import it, and must be called after
``tl_tensorflow.runtime.activate()``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from tl.errors import TLError, UsageError
from tl.training.distributed import World

if TYPE_CHECKING:
    import tensorflow as tf

#: ``World.mode`` of a TF_CONFIG cluster (also the name in ``Capabilities.distributed``).
MULTI_WORKER = "multi-worker"


def cluster_world(tf_config: str | None = None) -> World | None:
    """This worker's place in the TF_CONFIG cluster (``tf_config``, default: the environment's), or
    None when TF_CONFIG is absent or describes a single task. UsageError when it is not valid JSON
    describing a cluster."""
    if tf_config is None:
        tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return None
    try:
        spec = json.loads(tf_config)
        workers = list(spec.get("cluster", {}).get("worker", []))
        task = spec.get("task", {})
        index = int(task.get("index", 0)) + (1 if spec.get("cluster", {}).get("chief") else 0)
        chief = len(spec.get("cluster", {}).get("chief", []))
        count = len(workers) + chief
        if task.get("type") == "chief":
            index = 0
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"TF_CONFIG is not valid JSON describing a cluster: {exc}") from None
    if count <= 1:
        return None
    return World(rank=index, size=count, local_size=host_tasks(tf_config)[1], mode=MULTI_WORKER)


def host_tasks(tf_config: str) -> tuple[int, int]:
    """(this task's position among the TF_CONFIG cluster's tasks on its host, how many tasks that
    host runs), chief first, then workers; hosts compared by the name in TF_CONFIG. (0, 1) when
    unreadable."""
    try:
        spec = json.loads(tf_config)
        cluster = spec.get("cluster", {})
        tasks = [("chief", i, a) for i, a in enumerate(cluster.get("chief", []))]
        tasks += [("worker", i, a) for i, a in enumerate(cluster.get("worker", []))]
        me = (spec["task"]["type"], int(spec["task"].get("index", 0)))
        address = next(a for t, i, a in tasks if (t, i) == me)
    except (ValueError, TypeError, KeyError, AttributeError, StopIteration):
        return 0, 1
    host = str(address).rsplit(":", 1)[0]
    same_host = [(t, i) for t, i, a in tasks if str(a).rsplit(":", 1)[0] == host]
    return same_host.index(me), len(same_host)


def scope(strategy: tf.distribute.Strategy | None):
    """``strategy.scope()``; a no-op without a strategy (one device)."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _one_device_per_worker() -> None:
    """MultiWorkerMirroredStrategy makes a replica of every visible GPU; tl's batches are sharded per
    worker, so each worker keeps one GPU (the one matching its place on the host), like torchrun."""
    import tensorflow as tf

    from tl_tensorflow.runtime import gpus

    found = gpus()
    if not found:
        return
    index, count = host_tasks(os.environ.get("TF_CONFIG", "{}"))
    if count > len(found) and "CUDA_VISIBLE_DEVICES" not in os.environ:  # else each may see its own GPU
        raise TLError(f"TF_CONFIG puts {count} workers on this host, which has {len(found)} GPU(s); "
                      "run at most one worker per GPU (or give each its own with CUDA_VISIBLE_DEVICES)")
    if len(found) > 1:
        try:
            tf.config.set_visible_devices(found[index % len(found)], "GPU")
        except RuntimeError as exc:  # the runtime is already initialized
            raise TLError(f"cannot restrict this worker to one GPU: {exc}") from None


def create_strategy(replicas: int = 1, devices: list[str] | None = None) -> tf.distribute.Strategy | None:
    """Multi-worker (TF_CONFIG with 2+ tasks): join the cluster (blocks until every worker has
    started). Else, with ``replicas`` > 1: a MirroredStrategy over that many local GPUs (or the named
    ``devices``). None for one device. Call once per process, after the thread settings and before
    TensorFlow runs any op."""
    import tensorflow as tf

    world = cluster_world()
    if world is None:
        return mirrored(replicas, devices) if replicas > 1 or devices else None
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
    return strategy


def mirrored(replicas: int, devices: list[str] | None = None) -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over the first ``replicas`` GPUs (or ``devices``, e.g. logical CPUs in tests).
    NCCL all-reduce where the GPUs support it (TensorFlow's default cross-device ops)."""
    import tensorflow as tf

    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < replicas:
            raise TLError(f"the plan asks for {replicas} GPUs but TensorFlow sees {len(gpus)}")
        devices = [g.name for g in gpus[:replicas]]
    strategy = tf.distribute.MirroredStrategy(devices)
    if strategy.num_replicas_in_sync != len(devices):
        raise TLError(f"MirroredStrategy made {strategy.num_replicas_in_sync} replicas for {len(devices)} devices")
    return strategy


def distribute(strategy: tf.distribute.Strategy,
               make: Callable[[], tf.data.Dataset]) -> tf.distribute.DistributedDataset:
    """Each worker's own dataset (``make()``), element for element: no auto-sharding (the core has
    sharded already) and no rebatching (an element is this worker's per-replica batch)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    workers = (cluster_world() or World.from_env()).size

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        if input_context.num_input_pipelines != workers:
            raise TLError("expected one input pipeline per worker process")
        return make().with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)
