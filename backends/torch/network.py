"""The transformers modules of tl's BERT classifiers: ``BertForSequenceClassification`` for sequence
heads, ``BertForTokenClassification`` for token heads (``HEADS``), built from a checkpoint's config
and loaded with transformers' own weight names (no weight map needed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION, HeadSpec
from tl.models.hf_checkpoint import check_checkpoint_dir, classifier_config, read_config

#: Head kind -> the transformers class (same weight names ``classifier.weight/bias``, and id2label in
#: config.json). A new head kind is a new entry here and in ``Capabilities.heads``.
HEADS = {
    HEAD_SEQUENCE_CLASSIFICATION: "BertForSequenceClassification",
    HEAD_TOKEN_CLASSIFICATION: "BertForTokenClassification",
}


def head_class(head: HeadSpec):
    import transformers

    try:
        return getattr(transformers, HEADS[head.kind])
    except KeyError:
        raise UsageError(f"the torch backend cannot build a {head.kind!r} head (heads: {', '.join(HEADS)})") from None


def hf_config(checkpoint: Path, head: HeadSpec):
    """The checkpoint's BERT config with ``head``'s labels."""
    from transformers import BertConfig

    base = read_config(checkpoint)
    return BertConfig(**classifier_config(base, head))


def build_module(checkpoint: Path, head: HeadSpec, *, init: str, seed: int) -> torch.nn.Module:
    """``checkpoint``'s encoder (``init='pretrained'``: its weights; ``'scratch'``: random ones) with a
    fresh head for ``head``, on the CPU."""
    cls = head_class(head)
    check_checkpoint_dir(checkpoint)
    config = hf_config(checkpoint, head)
    torch.manual_seed(seed)  # the fresh head (and scratch weights) are seeded
    return cls(config) if init == "scratch" else _from_pretrained(cls, checkpoint, config, head_is_new=True)


def load_module(directory: Path, head: HeadSpec) -> torch.nn.Module:
    """A fine-tuned model directory (weights include the head), on the CPU."""
    cls = head_class(head)
    config = hf_config(directory, head)
    return _from_pretrained(cls, directory, config, head_is_new=False)


def _from_pretrained(cls, directory: Path, config, head_is_new: bool):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "newly initialized classifier" notice is expected
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module, loading = cls.from_pretrained(
                str(directory), config=config, use_safetensors=True, output_loading_info=True,
                trust_remote_code=False,
            )
    except UsageError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load weights from {directory}: {first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in loading.get("missing_keys", []) if not (head_is_new and k.startswith("classifier."))]
    if missing:
        raise UsageError(
            f"{directory}/model.safetensors lacks {len(missing)} BERT weights (e.g. {missing[0]}); "
            "is it a BERT checkpoint?"
        )
    mismatched = loading.get("mismatched_keys", [])
    if mismatched:
        raise UsageError(f"{directory}: weights with unexpected shapes: {mismatched[:3]}")
    return module
