"""A training progress bar: steps, loss, samples/s and time left (tqdm, on stderr)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int, disable: bool = False, initial: int = 0) -> None:
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps, unit="step", disable=disable, dynamic_ncols=True, file=sys.stderr,
            mininterval=0.25 if interactive else 10.0, desc="train", leave=True, initial=initial,
        )
        self._t0 = time.perf_counter()
        self._samples = 0
        self._loss: float | None = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def rate(self) -> float:
        """Samples per second since the bar started."""
        return self._samples / max(self.elapsed, 1e-9)

    def update(self, loss: float, samples: int) -> None:
        self._samples += samples
        self._loss = loss if self._loss is None else 0.9 * self._loss + 0.1 * loss
        self._bar.set_postfix(loss=f"{self._loss:.4f}", samples_s=f"{self.rate:.1f}",
                              refresh=False)
        self._bar.update(1)

    def write(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
