"""Models on disk and in use, the same for every backend: Hugging Face checkpoint folders
(``hf_checkpoint``), saving and loading tl models (``saved``), running them (``inference``) and
LoRA adapters in PEFT's format (``adapters``)."""
