"""The transformers modules of tl's classifiers: the family's own task class for each head kind
(``Family.architectures``: ``BertForSequenceClassification``, ``RobertaForTokenClassification``, ...),
built from a checkpoint's config and loaded with transformers' own weight names (no weight map)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from tl.errors import UsageError
from tl.interfaces import Family, HeadSpec
from tl.models.hf_checkpoint import check_checkpoint_dir, checkpoint_family, classifier_config, read_config


def head_class(family: Family, head: HeadSpec):
    """The transformers class of ``family`` for ``head``: ``transformers.<name>``, or for a class
    outside transformers ``"package.module:Class"`` (a ``PreTrainedModel`` subclass)."""
    import importlib

    import transformers

    name = family.architectures.get(head.kind)
    if name is None:
        raise UsageError(f"model family {family.name!r} has no {head.kind!r} head (heads: {', '.join(family.heads)})")
    module, _, attribute = name.rpartition(":")
    try:
        return getattr(importlib.import_module(module) if module else transformers, attribute)
    except (ImportError, AttributeError):
        where = module or f"transformers {transformers.__version__}"
        raise UsageError(f"{where} has no {attribute} (model family {family.name!r}); upgrade it or fix the "
                         "family's architectures") from None


def hf_config(checkpoint: Path, head: HeadSpec, family: Family | None = None):
    """The checkpoint's config, as the head class's config class, with ``head``'s labels."""
    base = read_config(checkpoint)
    family = checkpoint_family(checkpoint, base) if family is None else family
    config = classifier_config(base, head, family)
    config.pop("model_type", None)
    try:
        return head_class(family, head).config_class(**config)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{checkpoint}/config.json: {str(exc).splitlines()[0]}") from None


def build_module(checkpoint: Path, head: HeadSpec, *, init: str, seed: int) -> torch.nn.Module:
    """``checkpoint``'s encoder (``init='pretrained'``: its weights; ``'scratch'``: random ones) with a
    fresh head for ``head``, on the CPU."""
    check_checkpoint_dir(checkpoint)
    family = checkpoint_family(checkpoint)
    cls = head_class(family, head)
    config = hf_config(checkpoint, head, family)
    torch.manual_seed(seed)  # the fresh head (and scratch weights) are seeded
    if init == "scratch":
        return cls(config)
    return _from_pretrained(cls, checkpoint, config, family, head_is_new=True)


def load_module(directory: Path, head: HeadSpec) -> torch.nn.Module:
    """A fine-tuned model directory (weights include the head), on the CPU."""
    family = checkpoint_family(directory)
    cls = head_class(family, head)
    config = hf_config(directory, head, family)
    return _from_pretrained(cls, directory, config, family, head_is_new=False)


def _from_pretrained(cls, directory: Path, config, family: Family, head_is_new: bool):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "newly initialized classifier" notice is expected
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module, loading = cls.from_pretrained(  # mismatched shapes are reported below, one line
                str(directory), config=config, use_safetensors=True, output_loading_info=True,
                trust_remote_code=False, ignore_mismatched_sizes=True,
            )
    except UsageError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load weights from {directory}: {first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in loading.get("missing_keys", []) if not (head_is_new and family.is_head(k))]
    if missing:
        raise UsageError(
            f"{directory}/model.safetensors lacks {len(missing)} weights a {family.name} model of this config.json "
            f"has, the first being {missing[0]}; is it a {family.name} checkpoint?"
        )
    mismatched = [m for m in loading.get("mismatched_keys", [])
                  if not (head_is_new and family.is_head(_key(m)))]  # a fresh head: another label count
    if mismatched:
        raise UsageError(f"{directory}: {len(mismatched)} weights do not match config.json, the first being "
                         f"{_describe(mismatched[0])}")
    unexpected = [k for k in loading.get("unexpected_keys", [])
                  if not (family.short_name(k).endswith(family.buffers)
                          or family.short_name(k).startswith(family.ignored_prefixes + family.sequence_only))]
    if unexpected:
        raise UsageError(f"{directory}/model.safetensors has {len(unexpected)} weights that a {family.name} "
                         f"classifier does not use, the first being {unexpected[0]}; does config.json describe "
                         "these weights?")
    return module


def _key(entry) -> str:
    return str(entry[0] if isinstance(entry, (tuple, list)) else entry)


def _describe(entry) -> str:
    if isinstance(entry, (tuple, list)) and len(entry) == 3:
        key, found, expected = entry
        return f"{key} {tuple(found)} (config.json implies {tuple(expected)})"
    return str(entry)
