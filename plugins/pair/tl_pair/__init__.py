"""Sentence-pair classification tasks for tl: ``nli`` (entailment/neutral/contradiction) and
``paraphrase`` (binary). Installed as its own distribution, ``tl-pair``; tl finds it through the
``tl`` entry point group."""

__version__ = "0.1.0"
