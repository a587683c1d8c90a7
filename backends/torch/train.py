"""The torch training loop: AdamW, linear warm-up then linear decay, bf16 autocast, clipping."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tl import faults
from tl.data.batching import Batch
from tl.errors import TLError
from tl.interfaces import TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.ledger import Ledger
from tl.training.oom import OomRetry, split_group
from tl.training.resume import host_rng_state, set_host_rng_state
from tl.training.schedule import linear_schedule
from tl_torch import strategies
from tl_torch.distributed import all_reduce_sum, ddp, join_process_group
from tl_torch.model import TorchModel, summed_loss, to_inputs
from tl_torch.runtime import set_threads

MAX_GRAD_NORM = 1.0
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    optimizer step, each weighted by its share of the step's rows (labelled tokens for a token head),
    so the step's loss is the mean over all of them, exactly as without accumulation.

    Out of memory in a step: the step is redone with every micro-batch cut in two (then four...), for
    the rest of the run (``tl.training.oom``). Not under DDP (``world_size`` > 1): a rank that ran out
    would desynchronise the collectives, so there it is a one-line ``TLError`` at once."""
    set_threads(settings.threads)
    seed_everything(settings.seed)
    model.precision = settings.precision
    strategy = settings.strategy
    model.strategy = strategy
    model.module = strategies.prepare(model.module, strategy).to(model.device)
    module = model.module
    dev = model.device
    world = settings.world_size
    if world > 1:
        join_process_group(dev)
    wrapped_for = None  # which parameters trained when DDP last wrapped the module
    accum = max(1, settings.grad_accum)
    ledger = Ledger(settings, steps_per_epoch, callbacks,
                    lambda d: write_state(d, model, optimizer, scheduler, scaler))
    param_groups = strategies.optimizer_groups(model.module, strategy, settings.weight_decay)
    for g in param_groups:
        g["lr"] = settings.lr * g.pop("lr_scale")
    # one fused kernel over all parameters (CPU and CUDA): the per-tensor loop took ~15-25% of a CPU step
    optimizer = torch.optim.AdamW(param_groups, lr=settings.lr, fused=dev.type in FUSED_ADAMW_DEVICES)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(ledger.total_steps,
                                                                              ledger.warmup_steps))
    scaler = torch.amp.GradScaler(dev.type, enabled=settings.loss_scaling and settings.precision == "fp16")
    # CE summed over a batch's scored labels (rows, or labelled tokens of a token head), per-label weighted
    # with --class-weights (the weights' mean over the training targets is 1: the loss keeps its scale)
    weights = None if settings.class_weights is None else \
        torch.tensor(settings.class_weights, dtype=torch.float32, device=dev)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return summed_loss(logits, labels, weights)

    first_rows = -(-settings.batch_size // (accum * world))  # the configured micro-batch of one process
    retry = OomRetry(callbacks.warn, world)  # several processes: no retry (see OomRetry)

    def accumulate(micro_batches: list[Batch], targets: int) -> torch.Tensor:
        """Forward and backward over one step's micro-batches (gradients add up); the step's loss."""
        step_loss = torch.zeros((), dtype=torch.float32, device=dev)
        for batch in micro_batches:
            if faults.simulated_oom(ledger.step + 1, len(batch), first_rows):  # the fault suite's switch
                raise torch.OutOfMemoryError(f"injected out of memory at step {ledger.step + 1} ({len(batch)} rows)")
            inputs = to_inputs(batch, dev, model.token_types)
            labels = torch.from_numpy(batch.labels).to(dev, non_blocking=True)
            with model.autocast():
                logits = module(**inputs).logits
            # DDP averages gradients over ranks, so each rank's share is scaled back up by ``world``
            loss = loss_fn(logits.float(), labels) / max(targets, 1)
            scaler.scale(loss * world).backward()
            step_loss += loss.detach()
        return step_loss

    ledger.resume(lambda d: restore(d, model, optimizer, scheduler, scaler))
    if ledger.total_steps == 0:
        ledger.empty_epochs()
    start_epoch, skip = ledger.start_epoch, ledger.skip
    for epoch in range(start_epoch, settings.epochs if ledger.total_steps else 0):
        model.module.train()
        strategies.set_epoch(model.module, strategy, epoch)
        if world > 1:  # DDP registers the trainable parameters once: wrap again when they change
            trainable = tuple(p.requires_grad for p in model.module.parameters())
            if trainable != wrapped_for:
                module, wrapped_for = ddp(model.module, dev), trainable
        if epoch == settings.epochs - 1 or epoch == start_epoch:
            callbacks.on_info({"strategy": strategy.name, **strategies.parameter_counts(model.module)})
        batches = iter(train_batches(epoch))
        if epoch == start_epoch:  # resume mid-epoch: the data order is a function of (seed, epoch)
            for _ in range(skip):
                next(batches)
        for group in groups(batches, accum):
            rows = sum(len(b) for b in group)
            targets = sum(b.targets for b in group)  # = rows, or the labelled tokens of token labels
            if world > 1:  # every rank holds a shard: weight by the targets of the whole step
                rows, targets = (int(round(all_reduce_sum(float(n), dev))) for n in (rows, targets))
            while True:  # the step, retried with smaller micro-batches after an out-of-memory error
                try:
                    step_loss = accumulate(split_group(group, retry.split), targets)
                    break
                except torch.OutOfMemoryError:
                    pass  # recovered outside the handler, so that its traceback's tensors are freed first
                # the failed attempt leaves nothing: no gradients, and the optimizer, schedule, scaler and
                # ledger were not touched, so the retried step is the same step
                optimizer.zero_grad(set_to_none=True)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                retry.halve(ledger.step + 1, group)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None], MAX_GRAD_NORM)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                step_loss = torch.tensor(all_reduce_sum(float(step_loss), dev))
            ledger.step_done(float(step_loss), rows)  # ends the epoch after its last step; checkpoints
    model.module = strategies.finish(model.module, strategy)
    if world > 1:
        # DDP's reducer holds the process group: freed after destroy_process_group, its gloo threads
        # can wait forever for a peer that has already exited (seen as a hang at the end of training)
        del module
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


TRAINER_TENSORS = "trainer.safetensors"
TRAINER_META = "trainer.json"
LEGACY_TRAINER = "trainer.pt"  # tl <= 0.x: torch.save of the same state (read with weights_only=True)


def write_state(directory: Path, model: TorchModel, optimizer, scheduler, scaler) -> None:
    """Weights as safetensors; every other tensor (the optimizer's per-parameter state, torch's CPU and
    CUDA RNG states) in ``trainer.safetensors``; the rest (optimizer hyperparameters, schedule, loss
    scaler, Python's and NumPy's RNG states, which tensor is which) in ``trainer.json``. No pickles."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.module.state_dict().items()},
              str(directory / "model.safetensors"))
    tensors, meta = trainer_state(optimizer, scheduler, scaler)
    save_file(tensors, str(directory / TRAINER_TENSORS))
    (directory / TRAINER_META).write_text(json.dumps(meta), encoding="utf-8")


def trainer_state(optimizer, scheduler, scaler) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The training state as (tensors for safetensors, JSON-able metadata), the inverse of ``load_trainer_state``."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for param, values in opt["state"].items():
        entry: dict[str, Any] = {"tensors": [], "values": {}}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{param}/{name}"] = value.detach().cpu().contiguous()
                entry["tensors"].append(name)
            else:
                entry["values"][name] = value
        state[str(param)] = entry
    tensors["rng/torch"] = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    tensors.update({f"rng/cuda/{i}": s.cpu() for i, s in enumerate(cuda)})
    meta = {
        "format": 1,
        "optimizer": {"param_groups": opt["param_groups"], "state": state},
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": {"cuda": len(cuda), **host_rng_state()},
    }
    return tensors, meta


def load_trainer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], optimizer) -> dict[str, Any]:
    """``trainer_state``'s two halves as the dict ``torch.save`` held in a legacy ``trainer.pt``."""
    live = optimizer.param_groups
    groups = []
    for i, group in enumerate(meta["optimizer"]["param_groups"]):
        like = live[i] if i < len(live) else {}
        # JSON has no tuples (AdamW's betas): give back the type the optimizer uses
        groups.append({k: tuple(v) if isinstance(like.get(k), tuple) and isinstance(v, list) else v
                       for k, v in group.items()})
    state = {int(param): {**entry["values"], **{name: tensors[f"optimizer/{param}/{name}"] for name in entry["tensors"]}}
             for param, entry in meta["optimizer"]["state"].items()}
    rng = {**meta["rng"], "torch": tensors["rng/torch"],
           "cuda": [tensors[f"rng/cuda/{i}"] for i in range(int(meta["rng"]["cuda"]))]}
    return {"optimizer": {"state": state, "param_groups": groups}, "scheduler": meta["scheduler"],
            "scaler": meta["scaler"], "rng": rng}


def restore(directory: Path, model: TorchModel, optimizer, scheduler, scaler) -> None:
    """Reads what ``write_state`` wrote, or the ``trainer.pt`` of a checkpoint from an earlier tl
    (``torch.load(weights_only=True)``: tensors and plain containers only, no pickled code)."""
    from safetensors.torch import load_file

    try:
        model.module.load_state_dict(load_file(str(directory / "model.safetensors")))
        if (directory / TRAINER_TENSORS).is_file() or not (directory / LEGACY_TRAINER).is_file():
            meta = json.loads((directory / TRAINER_META).read_text(encoding="utf-8"))
            state = load_trainer_state(load_file(str(directory / TRAINER_TENSORS)), meta, optimizer)
        else:
            state = torch.load(directory / LEGACY_TRAINER, weights_only=True)
    except Exception as exc:
        raise TLError(f"cannot resume from {directory}: {type(exc).__name__}: {exc}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    set_host_rng_state(rng)


def fits_in_memory(model: TorchModel, batch: int, max_length: int) -> bool:
    """One forward and backward pass at full length; False on CUDA out-of-memory."""
    dev = model.device
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
