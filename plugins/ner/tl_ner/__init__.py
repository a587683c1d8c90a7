"""Named-entity recognition (token classification) for tl, installed as its own distribution,
``tl-ner``; tl finds it through the ``tl`` entry point group."""

__version__ = "0.1.0"
