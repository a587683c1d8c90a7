"""TensorFlow backend for tl (Keras 3 + KerasHub's BertBackbone on TensorFlow).

Importing this package does not import tensorflow, keras or keras_hub.
"""
