"""Entry point ``tl = onnx``: registers the ONNX Runtime backend without importing onnxruntime."""
