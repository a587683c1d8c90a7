"""One module per model family: how the TensorFlow backend builds it and names its weights.

A family module (``Family.tensorflow`` names it; ``tl_tensorflow.families.<name>`` for the
built-ins, any importable module for a third party's family) defines:

``build(config, family, num_labels, head_kind, source) -> tl_tensorflow.network.Classifier``
    The encoder and the head as transformers defines the family (``config``: the checkpoint's
    config.json as a dict; ``family``: the ``Family`` entry, passed on to ``Classifier``, so one module
    can serve several entries, as ``roberta`` serves ``xlm-roberta``; ``head_kind``: one of the
    family's ``architectures``; ``source``: the checkpoint directory, for messages). Randomly initialised; ``build_network`` builds the variables
    with a dummy call. Raise ``UsageError`` (one line) for a config value the module cannot honour.

``weight_map(net) -> list[tl_tensorflow.weights.WeightSpec]``
    Every weight of ``net`` under its transformers name without the family's base-model prefix
    (``encoder.layer.0.attention.self.query.weight``; head weights as transformers names them,
    ``classifier.weight``). Loading and saving both go through it, so they are exact inverses.

``attention_projections(net) -> dict[str, tuple[keras.layers.Layer, str]]``
    For LoRA: the transformers module name (no prefix) of each adapted projection (``Family.lora``)
    -> (the layer that owns it, the attribute holding it). The projection's kernel is [in, ...].

``unused_variables(net) -> list`` (optional)
    Variables the network has but transformers' class for this head does not (e.g. BERT's pooler
    under a token head): kept frozen, neither loaded nor saved.

Import these modules only after ``tl_tensorflow.runtime.activate()``.
"""
