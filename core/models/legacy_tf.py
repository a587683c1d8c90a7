"""Legacy TensorFlow checkpoints: a folder with ``config.json`` and ``tf_model.h5``, as transformers 4's
``TFBertFor*.save_pretrained`` wrote it, converted to ``model.safetensors`` in transformers' PyTorch
names, without a framework (numpy, h5py, safetensors).

``tf_model.h5`` is a Keras weights file: the root's ``layer_names`` attribute lists the layers, each
layer group's ``weight_names`` its variables, stored as datasets under those names
(``tf_bert_for_sequence_classification/bert/encoder/layer_._0/attention/self/query/kernel:0``). HDF5
holds arrays only, so reading one runs no code (unlike a pickle) and needs no ``--allow-pickle``.

Names follow transformers' own TF -> PyTorch rule (``modeling_tf_pytorch_utils``): drop the model's
name scope and ``:0``, ``_._`` is a ``/`` (``layer_._0`` -> ``layer.0``), ``a___b`` is ``b``
(``mlm___cls`` -> ``cls``), ``kernel`` -> ``weight`` transposed (Keras stores ``in x out``, torch
``out x in``), ``gamma`` / ``embeddings`` -> ``weight``, ``beta`` -> ``bias``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tl.errors import UsageError
from tl.models.hf_checkpoint import PICKLE_WEIGHTS, WEIGHTS_NAME, read_config

TF_WEIGHTS = "tf_model.h5"
#: The model types whose TF weight names this module knows (transformers 4's TF BERT classes).
SUPPORTED = ("bert",)
#: First name components of a transformers TF BERT weight after the model's name scope: the base model
#: and the heads of ``TFBertFor*`` (``cls``: pre-training heads; ``classifier``: sequence / token heads).
TOP_LEVEL = ("bert", "classifier", "cls", "qa_outputs")


def convert_tf_h5(directory: str | Path, cache: Path) -> Path:
    """A copy of ``directory`` in ``cache`` with ``tf_model.h5`` converted to ``model.safetensors``
    (other files, tokenizer files included, copied as they are); ``directory`` itself when it already has
    ``model.safetensors`` or has no ``tf_model.h5``. Cached by the folder's path and the h5 file's size
    and modification time, like ``hf_checkpoint.convert_pickled``."""
    d = Path(directory)
    source = d / TF_WEIGHTS
    if (d / WEIGHTS_NAME).is_file() or not source.is_file():
        return d
    config = read_config(d)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        raise UsageError(
            f"{source}: tl converts TensorFlow tf_model.h5 checkpoints of BERT only (model_type 'bert'), not "
            f"{model_type!r}; convert it with transformers (from_pretrained(..., from_tf=True), save_pretrained)"
        )
    stat = source.stat()
    key = f"{d.resolve()}\0{TF_WEIGHTS}\0{stat.st_size}\0{stat.st_mtime_ns}"
    target = cache / "converted" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (target / WEIGHTS_NAME).is_file():
        return target
    state = read_tf_h5(source, config)
    from safetensors.numpy import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for f in d.iterdir():
            if f.is_file() and f.name not in PICKLE_WEIGHTS:
                shutil.copyfile(f, tmp / f.name)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / WEIGHTS_NAME).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_tf_h5(path: str | Path, config: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The weights of a transformers TF BERT ``tf_model.h5`` as numpy arrays in transformers' PyTorch
    names (``bert.encoder.layer.0.attention.self.query.weight``, ``classifier.weight``, ...). ``config``
    (config.json), when given, is checked against the embedding shape."""
    path = Path(path)
    if importlib.util.find_spec("h5py") is None:
        raise UsageError(f"{path} is a TensorFlow checkpoint; tl reads it with h5py, which is not installed: "
                         "pip install h5py")
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UsageError(f"{path} is not an HDF5 file ({exc}); re-save the model with save_pretrained") from None
    state: dict[str, np.ndarray] = {}
    with f:
        names = f.attrs.get("layer_names")
        if names is None:
            kind = ("a whole saved Keras model (model.save)" if "model_weights" in f or "model_config" in f.attrs
                    else "not a Keras weights file (no layer_names)")
            raise UsageError(f"{path} is {kind}, not the tf_model.h5 transformers' save_pretrained writes")
        for layer in (_text(n) for n in names):
            group = f.get(layer)
            if not isinstance(group, h5py.Group):
                raise UsageError(f"{path} is damaged: layer {layer!r} has no group")
            for weight in (_text(w) for w in group.attrs.get("weight_names", [])):
                dataset = group.get(weight)
                if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != "f":
                    raise UsageError(f"{path} is damaged or not plain weights: {weight!r} is not a float array")
                name, transpose = pt_name(weight)
                if not name.startswith(tuple(t + "." for t in TOP_LEVEL)):
                    raise UsageError(f"{path} holds {weight!r}, not a weight of transformers' TF BERT; "
                                     "tl converts BERT checkpoints only")
                if name in state:
                    raise UsageError(f"{path} holds two weights named {name!r}")
                value = np.asarray(dataset[()])
                state[name] = np.ascontiguousarray(value.T if transpose else value)
    embeddings = state.get("bert.embeddings.word_embeddings.weight")
    if embeddings is None:
        raise UsageError(f"{path} has no BERT word embeddings (bert/embeddings/word_embeddings); "
                         "is it a transformers TF BERT checkpoint?")
    if config is not None:
        expected = (config.get("vocab_size"), config.get("hidden_size"))
        if embeddings.shape != expected:
            raise UsageError(f"{path} has word embeddings of shape {embeddings.shape}, but config.json says "
                             f"vocab_size x hidden_size = {expected[0]} x {expected[1]}")
    return state


def pt_name(tf_name: str) -> tuple[str, bool]:
    """transformers' PyTorch name of a TF weight name, and whether the array is transposed
    (``tf_bert_for_sequence_classification/bert/encoder/layer_._0/output/dense/kernel:0`` ->
    ``bert.encoder.layer.0.output.dense.weight``, True)."""
    name = re.sub(r":\d+$", "", tf_name)
    name = re.sub(r"/[^/]*___([^/]*)/", r"/\1/", name)
    name = re.sub(r"//+", "/", name.replace("_._", "/"))
    parts = name.split("/")
    if len(parts) > 1 and parts[0] not in TOP_LEVEL:
        parts = parts[1:]  # the Keras model's name scope (tf_bert_for_sequence_classification)
    transpose = parts[-1] == "kernel"
    if parts[-1] in ("kernel", "gamma", "embeddings"):
        parts[-1] = "weight"
    elif parts[-1] == "beta":
        parts[-1] = "bias"
    return ".".join(parts), transpose


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
