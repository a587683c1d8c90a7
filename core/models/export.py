"""Export directories, the same for every exporter (``tl export``): the formats and what they need,
the self-check inputs and comparison, staging beside the target, and the ``export`` block of tl.json.

Every export is self-checked before it is written: the written file is run (ONNX Runtime,
``tf.saved_model.load``) on ``sample_batches`` and compared with the framework model's float32 logits.

- fp32 exports compare logits, each difference scaled by the size of the logit it differs from:
  ``max |export - reference| / max(1, |reference|)`` (absolute below 1, relative above). Float32
  rounding grows with the magnitude of a value, and confident fine-tuned models have logits of 5-15,
  so a purely absolute bound would have to be loose for them and would then miss a broken export
  of a model whose logits are small. Default tolerance ``FP32_TOLERANCE``.
- int8 exports (weights quantized to 8 bits) cannot match logits that closely; they compare the
  probabilities, ``max |export - reference|``, and report how often the top label agrees. Default
  tolerance ``INT8_TOLERANCE``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tl.data.batching import Batch, Encoded
from tl.data.tokenization import Tokenizer
from tl.errors import TLError, UsageError

#: format -> (modules the exporter needs beyond its backend's, the pip extra that brings them).
FORMAT_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": (("onnx", "onnxscript", "onnxruntime"), "export"),
    "savedmodel": ((), ""),
}
#: format -> the ``--quantize`` choices it offers.
QUANTIZE: dict[str, tuple[str, ...]] = {"onnx": ("int8",)}

#: Default self-check tolerances (see the module docstring). Measured on these sample inputs: fp32
#: exports differ by <= 1e-6 (tiny BERT, MiniLM); int8 MiniLM fine-tuned on Rotten Tomatoes by 0.098
#: in probability (on 400 held-out snippets: 0.13 at most, 0.015 on average), tiny BERTs by less.
FP32_TOLERANCE = 1e-3
INT8_TOLERANCE = 0.2
TOLERANCE_HELP = (f"fp32: max |logit diff| / max(1, |logit|), default {FP32_TOLERANCE:g}; "
                  f"int8: max |probability diff|, default {INT8_TOLERANCE:g}")

#: Varied English for the self-check: short and long, punctuation, digits, accents, an emoji.
SAMPLE_TEXTS = (
    "A gripping, beautifully acted film.",
    "Dull.",
    "I wanted to like this movie, but the plot falls apart in the second half and never recovers.",
    "not bad at all",
    "The cast is superb; the script, sadly, is not.",
    "Is this the worst sequel ever made? Probably not, but it's close!",
    "Two hours, 14 minutes and $200 million later: nothing happens.",
    "Café owners in São Paulo will love the naïve charm of this one.",
    "It's a moving story about family, loss and the long road back home.",
    "meh 🙂",
    "THE ENDING MADE ME CRY!!!",
    "Director Jane Smith's third feature premiered in London on 3 May 2019.",
)
SAMPLE_PAIRS = (
    ("A man is playing a guitar.", "Someone plays music."),
    ("The film was long.", "The movie was short and forgettable."),
    ("Is it raining?", "Yes, it has rained all day in Paris."),
    ("The cat sat on the mat.", "A dog barked."),
)
#: Rows of random token ids (framed by the tokenizer's special tokens), up to the model's max_length.
RANDOM_ROWS = 8


class ExportCheckFailed(TLError):
    """The written export did not reproduce the framework model's outputs within the tolerance."""


@dataclass
class CheckResult:
    """A self-check's outcome, as tl.json's ``export.self_check`` records it."""

    metric: str
    max_abs_diff: float
    tolerance: float
    samples: int
    argmax_agreement: float
    reference: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def install_hint(fmt: str, backend_name: str) -> str:
    """What to install to export ``fmt`` with backend ``backend_name``."""
    extra = FORMAT_NEEDS.get(fmt, ((), ""))[1]
    return f"pip install 'tl[{backend_name}{',' + extra if extra else ''}]'"


def require_exporter(fmt: str, backend_name: str) -> None:
    """A one-line error when a module the ``fmt`` exporter needs is missing."""
    missing = [m for m in FORMAT_NEEDS.get(fmt, ((), ""))[0] if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--format {fmt} needs {', '.join(missing)}, which "
                         f"{'is' if len(missing) == 1 else 'are'} not installed: {install_hint(fmt, backend_name)}")


def check_quantize(fmt: str, quantize: str | None) -> None:
    if quantize and quantize not in QUANTIZE.get(fmt, ()):
        where = ", ".join(f"--format {f}" for f, q in QUANTIZE.items() if quantize in q)
        raise UsageError(f"--quantize {quantize} is not available for --format {fmt}"
                         + (f" (only for {where})" if where else ""))


def default_tolerance(quantize: str | None) -> float:
    return INT8_TOLERANCE if quantize else FP32_TOLERANCE


def sample_batches(tokenizer: Tokenizer, max_length: int, seed: int = 0) -> list[Batch]:
    """The self-check's inputs: ``SAMPLE_TEXTS`` in batches of 1, 3 and 8 rows (padded to the
    longest of each), ``SAMPLE_PAIRS`` as one batch, and ``RANDOM_ROWS`` rows of random token ids
    of lengths from 3 to ``max_length`` in batches of 1 (the longest alone) and the rest."""
    ids, types = tokenizer.encode(SAMPLE_TEXTS, None, max_length)
    texts = Encoded(ids, types, None, pad_id=tokenizer.pad_id)
    batches = [texts.collate(rows) for rows in ([0], [1, 2, 3], list(range(4, len(ids))))]
    p_ids, p_types = tokenizer.encode([a for a, _ in SAMPLE_PAIRS], [b for _, b in SAMPLE_PAIRS], max_length)
    batches.append(Encoded(p_ids, p_types, None, pad_id=tokenizer.pad_id).collate(range(len(p_ids))))
    frame = tokenizer.encode([""], None, max_length)[0][0]  # [CLS] [SEP], <s> </s>, ...
    rng = np.random.default_rng(seed)
    lengths = np.linspace(3, max(3, max_length), RANDOM_ROWS).astype(int)[::-1]
    rows = []
    for n in lengths:
        body = rng.integers(0, tokenizer.vocab_size, size=max(0, int(n) - len(frame)))
        rows.append(np.concatenate([frame[:1], body, frame[1:]]).astype(np.int32))
    rand = Encoded(rows, [np.zeros(len(r), dtype=np.int8) for r in rows], None, pad_id=tokenizer.pad_id)
    batches += [rand.collate([0]), rand.collate(range(1, len(rows)))]
    return batches


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def self_check(reference: Callable[[Batch], np.ndarray], run: Callable[[Batch], tuple[np.ndarray, np.ndarray]],
               batches: Sequence[Batch], *, quantize: str | None, tolerance: float | None,
               reference_name: str) -> CheckResult:
    """Compare the export (``run``: a batch's logits and probabilities) with the framework model
    (``reference``: its float32 logits, [rows, labels] or [rows, length, labels]) on ``batches``;
    token heads are compared on the real (unpadded) tokens only. Raises ``ExportCheckFailed``
    beyond ``tolerance`` (None: ``default_tolerance``)."""
    tolerance = default_tolerance(quantize) if tolerance is None else float(tolerance)
    worst, agree, total, samples = 0.0, 0, 0, 0
    for b in batches:
        want = np.asarray(reference(b), dtype=np.float64)
        logits, probs = (np.asarray(x, dtype=np.float64) for x in run(b))
        if logits.shape != want.shape or probs.shape != want.shape:
            raise ExportCheckFailed(f"self-check failed: the export gives outputs of shape {logits.shape} "
                                    f"where the model gives {want.shape}; the export was not written")
        keep = (b.attention_mask > 0) if want.ndim == 3 else np.ones(len(b), dtype=bool)
        if quantize:
            diff = np.abs(probs - _softmax(want))
        else:
            diff = np.abs(logits - want) / np.maximum(1.0, np.abs(want))
        # a probability check of the fp32 export too: softmax inside the graph must be right
        prob_diff = np.abs(probs - _softmax(logits)).max(initial=0.0)
        worst = max(worst, float(diff[keep].max(initial=0.0)), float(prob_diff) if not quantize else 0.0)
        agree += int((logits.argmax(-1) == want.argmax(-1))[keep].sum())
        total += int(keep.sum())
        samples += len(b)
    result = CheckResult("max |probability diff|" if quantize else "max |logit diff| / max(1, |logit|)",
                         worst, tolerance, samples, agree / max(1, total), reference_name)
    if not worst <= tolerance:  # NaN fails too
        kind = "int8 probabilities" if quantize else "fp32 logits"
        raise ExportCheckFailed(
            f"self-check failed: the export's {kind} differ from {reference_name}'s by {worst:.3g} "
            f"(tolerance {tolerance:g}; top label agrees on {result.argmax_agreement:.1%} of {total}); "
            "the export was not written (pass --tolerance to accept a larger difference)")
    return result


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A temporary directory beside ``target`` to write the export into; renamed to ``target`` when
    the block ends without error, removed otherwise (no half-written target, ever)."""
    target = Path(target)
    if target.exists():
        raise UsageError(f"{target} already exists; pass another --output")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()  # unlike mkdtemp's 0700, the mode a directory normally gets here
    try:
        yield tmp
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_meta(meta: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """The exported model's tl.json: the saved model's, with ``export`` (format, quantize, opset,
    inputs, outputs, self_check, versions) and the time of export."""
    from tl import __version__

    block = {**block, "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    block["versions"] = {"tl": __version__, **block.get("versions", {})}
    return {**meta, "export": block}
