"""The torch training loop: AdamW, linear warm-up then linear decay, bf16 autocast, clipping."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from tl.batching import Batch
from tl.config import TrainSettings
from tl.errors import TLError
from tl.interfaces import TrainCallbacks
from tl_torch.model import TorchModel, device, to_inputs

MAX_GRAD_NORM = 1.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def optimizer_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def groups(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    """The micro-batches of one optimizer step at a time."""
    group: list[Batch] = []
    for b in batches:
        group.append(b)
        if len(group) == size:
            yield group
            group = []
    if group:
        raise TLError(f"{len(group)} micro-batches left over; expected groups of {size}")


def train(model: TorchModel, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
          settings: TrainSettings, callbacks: TrainCallbacks) -> None:
    """``steps_per_epoch`` counts micro-batches; every ``settings.grad_accum`` of them make one
    optimizer step, each weighted by its share of the step's rows (so the step's loss is the mean
    over all of them, exactly as without accumulation)."""
    set_threads(settings.threads)
    seed_everything(settings.seed)
    model.precision = settings.precision
    module = model.module
    dev = device()
    world = settings.world_size
    if world > 1:
        module = join_process_group(module, dev)
    accum = max(1, settings.grad_accum)
    total = steps_per_epoch // accum * settings.epochs
    warmup = int(settings.warmup_ratio * total)
    optimizer = torch.optim.AdamW(optimizer_groups(module, settings.weight_decay), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total, warmup))
    scaler = torch.amp.GradScaler(dev.type, enabled=settings.loss_scaling and settings.precision == "fp16")
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    step = 0
    for epoch in range(settings.epochs):
        module.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        n_steps = 0
        for group in groups(train_batches(epoch), accum):
            rows = sum(len(b) for b in group)
            if world > 1:  # every rank holds a shard: weight by the rows of the whole step
                rows = all_reduce_sum(float(rows), dev)
                rows = int(round(rows))
            step_loss = torch.zeros((), dtype=torch.float32, device=dev)
            for batch in group:
                inputs = to_inputs(batch, dev)
                labels = torch.from_numpy(batch.labels).to(dev, non_blocking=True)
                with model.autocast():
                    logits = module(**inputs).logits
                # DDP averages gradients over ranks, so each rank's share is scaled back up by ``world``
                loss = loss_fn(logits.float(), labels) / rows
                scaler.scale(loss * world).backward()
                step_loss += loss.detach()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_GRAD_NORM)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                step_loss = torch.tensor(all_reduce_sum(float(step_loss), dev))
            loss_sum += step_loss
            n_steps += 1
            step += 1
            callbacks.on_step(step, float(step_loss), rows)
        module.eval()
        callbacks.on_epoch_end(epoch, float(loss_sum) / max(1, n_steps))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def join_process_group(module: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA) and wrap the module in DDP.
    Gradients are averaged over ranks during backward."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        return DistributedDataParallel(module, device_ids=[dev.index or 0])
    return DistributedDataParallel(module)


def all_reduce_sum(value: float, dev: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=dev)
    torch.distributed.all_reduce(t)
    return float(t.item())


def fits_in_memory(model: TorchModel, batch: int, max_length: int) -> bool:
    """One forward and backward pass at full length; False on CUDA out-of-memory."""
    dev = device()
    module = model.module
    ids = torch.full((batch, max_length), 100, dtype=torch.long, device=dev)
    try:
        with model.autocast():
            out = module(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        out.float().sum().backward()
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        module.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
