"""PyTorch backend for tl (transformers + torch). Importing this package does not import torch."""
