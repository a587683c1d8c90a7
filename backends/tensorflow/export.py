"""SavedModel export for TensorFlow Serving.

The ``serving_default`` signature takes token ids, as transformers names them: ``input_ids``,
``attention_mask``, ``token_type_ids`` (int32, shape [batch, length], length <= max_length), and returns
``logits`` and ``probabilities`` (float32, [batch, num_labels]; for a token-classification model such as
NER, [batch, length, num_labels], one row per word piece, padding rows to be ignored). Tokenize with the tokenizer files in
``assets/`` (``AutoTokenizer.from_pretrained(assets)`` gives the ids tl uses; for pre-split words of a
byte-level BPE family such as RoBERTa, load it with ``add_prefix_space=True``, as tl encodes them); ``assets/tl.json`` has the label
names in id order, and its ``export`` block the self-check's result: before the directory appears,
the written SavedModel is loaded with ``tf.saved_model.load`` and its ``serving_default`` run on
``tl.models.export.sample_batches``, compared with the Keras model's float32 logits
(``tl.models.export.self_check``). Token ids rather than raw strings keep the served ids identical to tl's
(an in-graph WordPiece would be a second tokenizer implementation to keep in sync).

Import this module only after ``tl_tensorflow.runtime.activate()`` (``TensorflowBackend`` does).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from tl.data.batching import Batch
from tl.models.export import CheckResult, export_meta, sample_batches, self_check, staged
from tl.models.hf_checkpoint import META_NAME, read_meta, write_json
from tl_tensorflow.model import TensorflowModel
from tl_tensorflow.network import to_inputs

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("logits", "probabilities")
SIGNATURE = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUTS}


def export_savedmodel(model: TensorflowModel, directory: Path, *, tolerance: float | None = None) -> CheckResult:
    """Write ``model`` as a SavedModel directory (tokenizer files and tl.json in ``assets/``),
    self-checked first; returns the check's result."""
    network = model.network

    @tf.function(input_signature=[SIGNATURE])
    def serve(inputs):
        logits = tf.cast(network({"token_ids": inputs["input_ids"], "segment_ids": inputs["token_type_ids"],
                                  "padding_mask": inputs["attention_mask"]}, training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    module = tf.Module()
    module.network = network
    module.serve = serve
    source = Path(model.info.get("path", ""))
    meta = read_meta(source)
    with staged(Path(directory)) as tmp:
        with warnings.catch_warnings():  # Keras' notice that saving traces the network with sorted input keys
            warnings.simplefilter("ignore", UserWarning)
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": serve})
        served = tf.saved_model.load(str(tmp)).signatures["serving_default"]

        def reference(b: Batch) -> np.ndarray:
            return tf.cast(network(to_inputs(b), training=False), tf.float32).numpy()

        def candidate(b: Batch) -> tuple[np.ndarray, np.ndarray]:
            out = served(**{n: tf.constant(np.asarray(getattr(b, n), dtype=np.int32)) for n in INPUTS})
            return out["logits"].numpy(), out["probabilities"].numpy()

        batches = sample_batches(model.tokenizer, int(meta.get("max_length", 128)))
        result = self_check(reference, candidate, batches, quantize=None, tolerance=tolerance,
                            reference_name="tensorflow")
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        model.tokenizer.save(assets, tokenizer_class=network.family.tokenizer_class)
        block = {"format": "savedmodel", "quantize": None, "signature": "serving_default", "inputs": list(INPUTS),
                 "outputs": list(OUTPUTS), "self_check": result.to_dict(),
                 "versions": {"tensorflow": tf.__version__}}
        write_json(assets / META_NAME, export_meta(meta, block))
    return result
