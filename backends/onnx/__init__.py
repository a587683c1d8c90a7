"""The ONNX Runtime backend: runs models exported by ``tl export --format onnx`` with neither torch
nor TensorFlow installed (``pip install 'tl[onnx]'``). Importing it imports no runtime."""
