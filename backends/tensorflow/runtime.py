"""Process-wide TensorFlow set-up: Keras' backend selection, TensorFlow's C++ start-up notices, thread
pools and the GPU list.

Nothing here runs on import: ``activate()`` selects Keras' backend and imports tensorflow, keras and
keras_hub; ``TensorflowBackend`` calls it in every method that needs the framework, before importing
the modules that use it (``tl_tensorflow.network``, ``model``, ``train``, ...).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tl.errors import TLError

if TYPE_CHECKING:
    import tensorflow as tf

FRAMEWORK_MODULES = ("tensorflow", "keras", "keras_hub")


def activate() -> None:
    """Make this process ready for TensorFlow: Keras on the TensorFlow backend, then tensorflow, keras
    and keras_hub imported and the devices discovered with TensorFlow's C++ start-up notices (oneDNN,
    cuInit without a GPU) kept off the terminal. Raises TLError when Keras was already imported on
    another backend. Cheap after the first call."""
    select_keras_backend()
    if all(name in sys.modules for name in FRAMEWORK_MODULES):
        return
    if "tensorflow" not in sys.modules:
        enable_onednn()
    with native_stderr_captured():
        import keras  # noqa: F401
        import keras_hub  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # loads the CUDA libraries; allocates no GPU memory


def enable_onednn() -> None:
    """TensorFlow's oneDNN kernels and graph fusions (matmul + bias + activation, layer norm) on every
    x86 CPU, unless the user set ``TF_ENABLE_ONEDNN_OPTS`` themselves. TensorFlow turns them on by
    default only on CPUs with AVX-512 VNNI/BF16 or AMX; on an AVX2 CPU they made MiniLM's fp32
    training step 10% faster (``bench/profile_step.py --backend tensorflow``). Read once, when
    TensorFlow is first imported."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextlib.contextmanager
def graph_rewrites_off() -> Iterator[Callable[[], contextlib.AbstractContextManager]]:
    """Grappler's graph rewrites off for the ``tf.function`` calls made inside, on a process without
    GPUs, unless the user turned them off already (then nothing changes); restored on exit. Yields
    ``restored()``: a context manager giving the user's setting back for the calls made inside it.

    A function is optimized when first called, with the setting of that call, and the setting travels
    with every call: toggling it back and forth reuses each function as first optimized. The training
    step runs with the rewrites off on CPU: they took 1.3 s of MiniLM's first step (remapper, memory,
    layout and constant-folding passes, twice over a 4,500-node step graph) and left the later steps
    no faster (``bench/versions.py`` before/after, ``bench/profile_step.py``'s first-step row).
    Evaluation and prediction, inside ``restored()``, keep them: their fused matmul + bias +
    activation kernels pay at inference."""
    user = _meta_optimizer_is_disabled()
    if user or gpus():
        yield contextlib.nullcontext
        return
    with _meta_optimizer_disabled(True):
        yield lambda: _meta_optimizer_disabled(user)


@contextlib.contextmanager
def _meta_optimizer_disabled(flag: bool) -> Iterator[None]:
    """Grappler's meta-optimizer disabled (``flag``) or not inside; the setting before, after."""
    import tensorflow as tf

    before = _meta_optimizer_is_disabled()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": flag})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def _meta_optimizer_is_disabled() -> bool:
    import tensorflow as tf

    return bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))


def select_keras_backend() -> None:
    """Make Keras run on TensorFlow; Keras picks its backend once, when it is first imported."""
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return
    try:
        current = loaded.backend.backend()
    except AttributeError:  # Keras 2, or a half-imported module
        current = getattr(loaded, "__version__", "unknown")
    if current != "tensorflow":
        raise TLError(
            f"Keras was already imported in this process with the {current!r} backend; the tensorflow "
            "backend of tl needs Keras on TensorFlow. Set KERAS_BACKEND=tensorflow (or run tl in a fresh "
            "process) before anything imports keras."
        )


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """TensorFlow's C++ start-up notices (oneDNN, "no CUDA drivers") ignore TF_CPP_MIN_LOG_LEVEL in
    recent releases; keep them off the user's terminal, but show them if the guarded code fails."""
    if os.environ.get("TL_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def set_threads(threads: int | None) -> None:
    """TensorFlow fixes its thread pools when it first runs an op (building the model does), so
    this only takes effect when called before; otherwise a different request is reported."""
    if not threads:
        return
    activate()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            warnings.warn(
                f"threads={threads} not applied: TensorFlow's thread pools were already initialized "
                f"(intra-op threads: {current or 'all cores'})",
                RuntimeWarning,
                stacklevel=2,
            )


def gpus() -> list[tf.config.PhysicalDevice]:
    """The GPUs TensorFlow sees; listing does not allocate GPU memory."""
    activate()
    import tensorflow as tf

    with native_stderr_captured():  # the first listing loads the CUDA libraries, with their notices
        return tf.config.list_physical_devices("GPU")


def gpu_devices() -> list[tuple[str, tuple[int, int] | None]]:
    """(name, compute capability) of each visible GPU."""
    found = gpus()
    import tensorflow as tf

    out = []
    for gpu in found:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        out.append((details.get("device_name", gpu.name), tuple(capability) if capability else None))
    return out
