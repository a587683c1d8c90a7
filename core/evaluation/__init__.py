"""Scoring a model: classification metrics in numpy, and evaluating a model over an encoded set
(sharded across processes in a multi-process run)."""
