"""``tl tune``: hyperparameter search on Optuna over normal runs.

- ``space``: ``--param NAME=SPACE`` parsed and checked, and each trial's values suggested;
- ``study``: the Optuna study in ``DIR/study.db``, one trial as one run, pruning, resuming;
- ``report``: the trials' table and plot, and the best configuration as a recipe.

Optuna is imported inside functions only (``tl --help`` does not load it).
"""
