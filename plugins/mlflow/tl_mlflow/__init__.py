"""MLflow tracking for tl, installed as its own distribution, ``tl-mlflow``; tl finds it through the
``tl`` entry point group and calls it through tl's run-event hooks only."""

__version__ = "0.1.0"
