"""SavedModel export for TensorFlow Serving.

The ``serving_default`` signature takes token ids, as transformers names them: ``input_ids``,
``attention_mask``, ``token_type_ids`` (int32, shape [batch, length], length <= max_length), and returns
``logits`` and ``probabilities`` (float32, [batch, num_labels]; for a token-classification model such as
NER, [batch, length, num_labels], one row per word piece, padding rows to be ignored). Tokenize with the tokenizer files in
``assets/`` (``AutoTokenizer.from_pretrained(assets)`` gives the ids tl uses; for pre-split words of a
byte-level BPE family such as RoBERTa, load it with ``add_prefix_space=True``, as tl encodes them); ``assets/tl.json`` has the label
names in id order. Token ids rather than raw strings keep the served ids identical to tl's
(an in-graph WordPiece would be a second tokenizer implementation to keep in sync).

Import this module only after ``tl_tensorflow.runtime.activate()`` (``TensorflowBackend`` does).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from tl_tensorflow.model import TensorflowModel

SIGNATURE = {
    name: tf.TensorSpec([None, None], tf.int32, name=name)
    for name in ("input_ids", "attention_mask", "token_type_ids")
}


def export_savedmodel(model: TensorflowModel, directory: Path, meta_dir: Path | None = None) -> Path:
    network = model.network

    @tf.function(input_signature=[SIGNATURE])
    def serve(inputs):
        logits = tf.cast(network({"token_ids": inputs["input_ids"], "segment_ids": inputs["token_type_ids"],
                                  "padding_mask": inputs["attention_mask"]}, training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    module = tf.Module()
    module.network = network
    module.serve = serve
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as tmp:
        staged = Path(tmp) / "savedmodel"
        tf.saved_model.save(module, str(staged), signatures={"serving_default": serve})
        assets = staged / "assets"
        assets.mkdir(exist_ok=True)
        model.tokenizer.save(assets, tokenizer_class=model.network.family.tokenizer_class)
        source = meta_dir or Path(model.info.get("path", ""))
        if (source / "tl.json").is_file():
            shutil.copyfile(source / "tl.json", assets / "tl.json")
        staged.rename(directory)
    return directory
