"""Formatting for bench/compare.py: a one-line summary per sample and the Markdown tables."""

from __future__ import annotations

import statistics
from typing import Any


def brief(sample: dict) -> str:
    if "error" in sample:
        return "FAILED"
    for key, unit in (("samples_per_second", "samples/s"), ("texts_per_second", "texts/s"),
                      ("steady_texts_per_second", "texts/s steady"), ("peak_flops", "FLOP/s")):
        if sample.get(key) is not None:
            extra = f", accuracy {sample['eval_accuracy']:.4f}" if "eval_accuracy" in sample else ""
            value = f"{sample[key] / 1e9:.0f} G" if key == "peak_flops" else f"{sample[key]}"
            return f"{value} {unit}{extra}"
    return f"{sample.get('wall_s')} s"


def _fmt(x: float | None, digits: int = 1, suffix: str = "") -> str:
    return "—" if x is None else f"{x:,.{digits}f}{suffix}"


def _variants(summary: dict, section: str) -> dict[str, Any]:
    return summary["results"].get(section, {}).get("variants", {})


def _failed(v: dict) -> str:
    n = sum(1 for s in v["samples"] if "error" in s)
    return f" ({n} of {len(v['samples'])} failed)" if n else ""


def training_table(summary: dict, section: str, baseline: str) -> list[str]:
    vs = _variants(summary, section)
    if not vs:
        return []
    settings = summary["settings"]
    base = vs.get(baseline, {}).get("median", {})
    title = {"train-torch": "torch", "train-tf": "TensorFlow", "backends": "tl on torch and on TensorFlow"}[section]
    lines = [f"**Training, {title}** — {settings['steps']} steps × "
             f"batch 32 ({settings['train_samples']} samples), {settings['precision']}, {settings['threads']} threads, "
             f"held-out accuracy on {settings['eval_samples']} examples; median of {settings['repeats']}:", "",
             f"| variant | samples/s | {'÷ tl (torch)' if section == 'backends' else 'tl ÷ variant'} | held-out "
             f"accuracy | {'torch − variant' if section == 'backends' else 'tl − variant'} (points) | time to first step | "
             "peak RSS | padded tokens / sample | MFU (useful) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, v in vs.items():
        m = v["median"]
        mfu = summary["mfu"].get(f"{section}: {name}", {})
        speed = base.get("samples_per_second") / m["samples_per_second"] if m.get("samples_per_second") and \
            base.get("samples_per_second") else None
        if section == "backends" and speed:  # this table's ratio is the variant's over torch's
            speed = 1 / speed
        delta = 100 * (base["eval_accuracy"] - m["eval_accuracy"]) if "eval_accuracy" in m and \
            "eval_accuracy" in base else None
        lines.append(
            f"| {name}{_failed(v)} | {_fmt(m.get('samples_per_second'))} | "
            f"{'—' if name == baseline else _fmt(speed, 2, '×')} | {_fmt(m.get('eval_accuracy'), 4)} | "
            f"{'—' if name == baseline else _fmt(delta, 2)} | {_fmt(m.get('first_step_s'), 1, ' s')} | "
            f"{_fmt(m.get('max_rss_mib'), 0, ' MiB')} | {_fmt(mfu.get('padded_tokens_per_sample'))} | "
            f"{_fmt(100 * mfu['mfu'] if 'mfu' in mfu else None, 1, '%')} "
            f"({_fmt(100 * mfu['useful_mfu'] if 'mfu' in mfu else None, 1, '%')}) |")
    return [*lines, ""]


def tokenize_table(summary: dict) -> list[str]:
    vs = _variants(summary, "tokenize")
    if not vs:
        return []
    base = vs.get("tokenize tl", {}).get("median", {}).get("texts_per_second")
    lines = [f"**Tokenization** — {summary['settings']['tokenize_texts']:,} training texts, max length 128; median of "
             f"{summary['settings']['repeats']}:", "", "| variant | texts/s | tl ÷ variant |", "|---|---|---|"]
    names = {"tokenize tl": "tl Tokenizer.encode (both backends)",
             "tokenize hf-loop": "transformers tokenizer, one text at a time, padded to 128 (classic)",
             "tokenize hf-batch": "transformers tokenizer, one batched call (Trainer script)",
             "tokenize kerashub": "KerasHub BertTextClassifierPreprocessor on tf.data (batch 32)"}
    for name, v in vs.items():
        t = v["median"].get("texts_per_second")
        lines.append(f"| {names.get(name, name)}{_failed(v)} | {_fmt(t, 0)} | "
                     f"{'—' if name == 'tokenize tl' else _fmt(base / t if base and t else None, 2, '×')} |")
    return [*lines, ""]


def predict_table(summary: dict) -> list[str]:
    vs = _variants(summary, "predict")
    if not vs:
        return []
    n = summary["settings"]["predict_texts"]
    s = summary["settings"]
    lines = [f"**Inference** — {s['precision']} (autocast; float32 weights), {s['threads']} thread(s), one fine-tuned model directory, held-out texts; steady state = "
             f"{n[0]} / (t({n[1]}) − t({n[0]})) (start-up and loading cancel), end-to-end = {n[1]} / t({n[1]}) "
             f"of the whole process; median of {summary['settings']['repeats']}:", "",
             "| variant | steady-state texts/s | end-to-end texts/s | peak RSS |", "|---|---|---|---|"]
    for name, v in vs.items():
        m = v["median"]
        lines.append(f"| {name}{_failed(v)} | {_fmt(m.get('steady_texts_per_second'))} | "
                     f"{_fmt(m.get('end_to_end_texts_per_second'))} | {_fmt(m.get('max_rss_mib'), 0, ' MiB')} |")
    return [*lines, ""]


def startup_table(summary: dict) -> list[str]:
    vs = _variants(summary, "startup")
    if not vs:
        return []
    lines = ["**Start-up** (wall time of the whole command; median):", "", "| command | wall | peak RSS |",
             "|---|---|---|"]
    for name, v in vs.items():
        m = v["median"]
        lines.append(f"| `{name}`{_failed(v)} | {_fmt(m.get('wall_s'), 2, ' s')} | {_fmt(m.get('max_rss_mib'), 0, ' MiB')} |")
    return [*lines, ""]


def peak_table(summary: dict) -> list[str]:
    vs = _variants(summary, "peak")
    if not vs:
        return []
    device = summary["settings"].get("device", "cpu")
    sizes = "4096 and 8192" if device == "cuda" else "2048 and 4096"  # compare.py's peak_variant
    lines = [f"**Dense GEMM peak** (square matmuls {sizes}, best size's median, on {device}, "
             f"{summary['settings']['threads']} threads), the denominators of MFU:", "",
             "| framework | fp32 GFLOP/s | bf16 GFLOP/s |", "|---|---|---|"]
    for fw in ("torch", "tensorflow"):
        cells = [_fmt((vs.get(f"{fw} {dt}", {}).get("median", {}).get("peak_flops") or 0) / 1e9 or None, 0)
                 for dt in ("fp32", "bf16")]
        lines.append(f"| {fw} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def contention(summary: dict) -> float | None:
    """Median CPU cores that other processes kept busy during the runs."""
    values = [s["others_cores"] for section in summary["results"].values() for v in section["variants"].values()
              for s in v["samples"] if s.get("others_cores") is not None]
    return statistics.median(values) if values else None


def markdown(summary: dict) -> str:
    machine, settings = summary["machine"], summary["settings"]
    busy = contention(summary)
    lines = [f"Machine: {machine['cpu']}, {machine['cores_usable']} usable cores, {machine['memory_gib']} GiB; "
             f"{', '.join(f'{k} {v}' for k, v in machine['versions'].items() if v)}. Every run used "
             f"{settings['threads']} thread(s) at niceness {settings['niceness']}; other processes kept a median of "
             f"{_fmt(busy, 1)} of the {machine['cores_usable']} cores busy meanwhile.", ""]
    lines += training_table(summary, "train-torch", "tl (torch)")
    lines += training_table(summary, "train-tf", "tl (tensorflow)")
    lines += training_table(summary, "backends", "tl (torch)")
    if "tl tf/tl torch samples/s" in summary["ratios"]:
        lines += [f"tl on TensorFlow ÷ tl on torch, samples/s: **{summary['ratios']['tl tf/tl torch samples/s']:.2f}×**", ""]
    lines += tokenize_table(summary)
    lines += predict_table(summary)
    lines += startup_table(summary)
    lines += peak_table(summary)
    return "\n".join(lines)
