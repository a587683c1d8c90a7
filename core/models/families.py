"""The built-in model families and the lookup of a checkpoint's family.

A family is a ``tl.interfaces.Family`` entry: the ``model_type`` values it reads, transformers' task
classes (the torch backend builds those, and config.json names them), its tokenizer kind, and the
module that builds it on TensorFlow. The built-ins are registered by ``tl.plugins.builtin`` through
the ``tl_register_families`` hook, like a third party's; ``available`` starts from them even with
plugin autoloading off, so that tests and ``TL_DISABLE_PLUGIN_AUTOLOAD=1`` still read every built-in
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION as SEQ
from tl.interfaces import HEAD_TOKEN_CLASSIFICATION as TOK
from tl.interfaces import Family

HOOK_HINT = "a plugin adds one with the tl_register_families hook (README: Writing a plugin)"


def _heads(stem: str) -> dict[str, str]:
    return {SEQ: f"{stem}ForSequenceClassification", TOK: f"{stem}ForTokenClassification"}


BUILTIN: tuple[Family, ...] = (
    Family("bert", "BERT and MiniLM (WordPiece; pooler head)", ("bert",), "bert", _heads("Bert"),
           "wordpiece", "BertTokenizer", "tl_tensorflow.families.bert",
           sequence_only=("pooler.",), ignored_prefixes=("cls.",)),
    Family("distilbert", "DistilBERT (6 layers distilled from BERT; no token types)", ("distilbert",),
           "distilbert", _heads("DistilBert"), "wordpiece", "DistilBertTokenizer",
           "tl_tensorflow.families.distilbert", token_type_ids=False,
           head_modules=("pre_classifier", "classifier"),
           ignored_prefixes=("vocab_transform.", "vocab_layer_norm.", "vocab_projector."),
           lora=("q_lin", "v_lin"), layer_pattern=r"^transformer\.layer\.(\d+)\.", depth_key="n_layers"),
    Family("roberta", "RoBERTa (byte-level BPE; positions offset past the padding id)", ("roberta",), "roberta",
           _heads("Roberta"), "bpe", "RobertaTokenizer", "tl_tensorflow.families.roberta",
           token_type_ids=False, ignored_prefixes=("lm_head.", "pooler."), positions_after_padding=True),
    Family("xlm-roberta", "XLM-RoBERTa (RoBERTa on 100 languages; SentencePiece)", ("xlm-roberta",), "roberta",
           _heads("XLMRoberta"), "unigram", "XLMRobertaTokenizer", "tl_tensorflow.families.roberta",
           token_type_ids=False, ignored_prefixes=("lm_head.", "pooler."), positions_after_padding=True),
    Family("albert", "ALBERT (factorized embeddings, one layer shared across depth; SentencePiece)", ("albert",),
           "albert", _heads("Albert"), "unigram", "AlbertTokenizer", "tl_tensorflow.families.albert",
           sequence_only=("pooler.",), ignored_prefixes=("predictions.", "sop_classifier."),
           layer_pattern=r"^encoder\.albert_layer_groups\.(\d+)\.", depth_key="num_hidden_groups"),
    Family("electra", "ELECTRA discriminator (WordPiece; GELU classification head)", ("electra",), "electra",
           _heads("Electra"), "wordpiece", "ElectraTokenizer", "tl_tensorflow.families.electra",
           ignored_prefixes=("discriminator_predictions.", "generator_predictions.", "generator_lm_head.",
                             "generator.")),
    Family("deberta-v2", "DeBERTa-v2 and v3 (disentangled relative attention; SentencePiece)", ("deberta-v2",),
           "deberta", _heads("DebertaV2"), "unigram", "DebertaV2Tokenizer", "tl_tensorflow.families.deberta_v2",
           head_modules=("pooler", "classifier"),
           ignored_prefixes=("lm_predictions.", "mask_predictions.", "cls.", "embeddings.position_embeddings."),
           lora=("query_proj", "value_proj")),
    Family("mpnet", "MPNet (relative position bias; WordPiece), e.g. all-mpnet-base-v2", ("mpnet",), "mpnet",
           _heads("MPNet"), "wordpiece", "MPNetTokenizer", "tl_tensorflow.families.mpnet",
           token_type_ids=False, ignored_prefixes=("lm_head.", "pooler."), lora=("q", "v"),
           positions_after_padding=True),
)


def available(registered: Mapping[str, Family] | None = None) -> dict[str, Family]:
    """Every family by name: the built-ins, then those the plugins registered (``registered``; None:
    from the installed plugins now), a plugin's entry replacing a built-in of the same name."""
    families = {f.name: f for f in BUILTIN}
    if registered is None:
        from tl.plugins import build_registry, get_plugin_manager

        registered = build_registry(get_plugin_manager()).items.get("family", {})
    families.update(registered)
    return families


def builtin(name: str) -> Family:
    """The built-in family ``name`` (no plugin lookup)."""
    return family_named(name, {f.name: f for f in BUILTIN})


def family_named(name: str, families: Mapping[str, Family] | None = None) -> Family:
    families = available() if families is None else families
    try:
        return families[name]
    except KeyError:
        raise UsageError(f"unknown model family {name!r}; families: {', '.join(sorted(families))}") from None


def family_for(config: Mapping[str, Any], source: Any = "config.json",
               families: Mapping[str, Family] | None = None) -> Family:
    """The family whose ``model_types`` has ``config['model_type']``, or a one-line error naming the
    supported families and the hook that adds one."""
    families = available() if families is None else families
    model_type = config.get("model_type")
    for family in families.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(sorted({t for f in families.values() for t in f.model_types}))
    raise UsageError(f"{source}: model_type {model_type!r} is not supported (supported: {supported}); {HOOK_HINT}")
