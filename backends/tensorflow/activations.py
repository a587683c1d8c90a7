"""Activation functions the TensorFlow families build with, where TensorFlow's own is slower than it
need be (``tl_tensorflow.network.ACTIVATIONS`` maps transformers' names to them)."""

from __future__ import annotations

import tensorflow as tf

SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)


@tf.custom_gradient
def gelu_exact(x: tf.Tensor):
    """GELU with the normal CDF through ``erf``, as torch and transformers compute it
    (``x * 0.5 * (1 + erf(x / sqrt 2))``), and its derivative written out
    (``cdf(x) + x * pdf(x)``). TensorFlow's ``tf.nn.gelu(approximate=False)`` goes through ``erfc``,
    which Eigen does not vectorize, and is differentiated op by op: forward and backward on MiniLM's
    feed-forward activations ([32, 35, 1536], fp32, one thread) took 9.5 ms there and 6.2 ms here
    (torch's fused kernels: 2.9 ms), 20 ms of each training step over MiniLM's six layers."""
    with tf.name_scope("gelu"):  # profiles group its ops by this name (bench/profile_step.py)
        cdf = 0.5 * (1.0 + tf.math.erf(x * SQRT_HALF))
        y = x * cdf

    def grad(dy: tf.Tensor) -> tf.Tensor:
        with tf.name_scope("gelu_grad"):
            return dy * (cdf + x * INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x)))

    return y, grad
