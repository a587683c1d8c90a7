"""Generic multi-class text classification for tl: the ``classify`` task. Installed as its own
distribution, ``tl-multiclass``; tl finds it through the ``tl`` entry point group."""

__version__ = "0.1.0"
