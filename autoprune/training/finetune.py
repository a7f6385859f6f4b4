"""The fine-tune every pruned model gets: SGD with a cosine schedule, optional distillation, resumable checkpoints.

Export runs it for whole epochs on the training split; the finetune:K proxy runs the same step K times. A
training schedule (schedule.py) may prune while it trains; it is checkpointed with the weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..data.task import Batches, TaskData
from ..errors import AutopruneError

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
KD_TEMPERATURE = 4.0
KD_WEIGHT = 0.7  # share of the distillation term in the loss when a teacher is given


def batch_stream(images: Batches, batch_size: int, seed: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(step, images, labels) over epoch after epoch of shuffled, augmented batches, from step `start`."""
    per_epoch = images.num_batches(batch_size, drop_last=True)
    if per_epoch == 0:
        raise AutopruneError(f"training needs at least {batch_size} images, the data has {len(images)}")
    step = start
    while True:
        epoch, skip = divmod(step, per_epoch)
        for x, y in images.batches(batch_size, shuffle=True, seed=seed * 10_007 + epoch, augment=True, drop_last=True, skip=skip):
            yield step, x, y
            step += 1


def training_loss(model: nn.Module, data: TaskData, x: torch.Tensor, y: torch.Tensor, teacher: nn.Module | None) -> torch.Tensor:
    logits = model(x)
    loss = data.loss(logits, y)
    if teacher is None:
        return loss
    with torch.no_grad():
        soft = F.log_softmax(teacher(x) / KD_TEMPERATURE, dim=1)
    kd = F.kl_div(F.log_softmax(logits / KD_TEMPERATURE, dim=1), soft, log_target=True, reduction="batchmean")
    return (1 - KD_WEIGHT) * loss + KD_WEIGHT * KD_TEMPERATURE**2 * kd


def sgd(model: nn.Module, lr: float, steps: int):
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, nesterov=True)
    return optimiser, torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))


class TrainingSchedule(Protocol):
    """What prunes while a fine-tune trains (schedule.py): called around each step, checkpointed with it."""

    def identity(self) -> dict: ...
    def after_backward(self, step: int) -> None: ...
    def after_step(self, step: int) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def train_step(model, data: TaskData, optimiser, scheduler, step: int, seed: int, x, y, teacher,
                schedule: TrainingSchedule | None = None) -> float:
    torch.manual_seed(seed * 10_007 + step)  # layers that draw random numbers (dropout) repeat on resume
    model.train()
    optimiser.zero_grad(set_to_none=True)
    loss = training_loss(model, data, x, y, teacher)
    loss.backward()
    if schedule is not None:
        schedule.after_backward(step)
    optimiser.step()
    scheduler.step()
    if schedule is not None:
        schedule.after_step(step)
    return loss.item()


def read_checkpoint(path: Path, model: nn.Module, run: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved_run = {k: state.get(k) for k in run}
        model_state = state["model"]
    except Exception as exc:  # a torn or foreign file: any reason it cannot be read is the same message
        raise AutopruneError(f"cannot resume from checkpoint {path}: {type(exc).__name__} {exc}") from exc
    if saved_run != run:
        raise AutopruneError(f"checkpoint {path} belongs to another fine-tune ({saved_run}, this one is {run}): move it away")
    mine = model.state_dict()
    if model_state.keys() != mine.keys() or any(model_state[k].shape != v.shape for k, v in mine.items()):
        raise AutopruneError(f"checkpoint {path} holds the weights of a differently shaped model")
    return state


def write_checkpoint(path: Path, state: dict) -> None:
    # Written beside and renamed, so an interruption mid-write leaves the previous checkpoint whole.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def finetune_steps(data: TaskData, epochs: float, batch_size: int = 128) -> int:
    total = round(epochs * data.train.num_batches(batch_size, drop_last=True))
    if total < 1:
        raise AutopruneError(f"fine-tuning {epochs} epochs of {len(data.train)} samples at batch {batch_size} is no step")
    return total


def finetune(
    model: nn.Module,
    data: TaskData,
    epochs: float = 1,
    lr: float = 0.01,
    teacher: nn.Module | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 128,
    checkpoint_every: int = 100,
    progress: bool = True,
    schedule: TrainingSchedule | None = None,
) -> nn.Module:
    """Trains `model` in place on data.train with SGD and a cosine schedule over all steps; returns it.

    `epochs` may be fractional. With `checkpoint`, the state (weights, optimiser, schedule, step) is saved
    every `checkpoint_every` steps and at the end, and a run that finds the file resumes from it: it ends
    with the weights an uninterrupted run would have. The file loads with weights_only=True. A `schedule`
    (schedule.py) prunes while it trains and is checkpointed with it.
    """
    total = finetune_steps(data, epochs, batch_size)
    optimiser, scheduler = sgd(model, lr, total)
    run = {"total_steps": total, "seed": seed, "batch_size": batch_size, "lr": float(lr), "distilled": teacher is not None,
           **(schedule.identity() if schedule is not None else {})}
    path = Path(checkpoint) if checkpoint else None
    state = read_checkpoint(path, model, run) if path else None
    start = 0
    if state:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
        start = int(state["step"])
    if teacher is not None:
        teacher.eval()

    def save(step: int) -> None:
        if path:
            snapshot = {"model": model.state_dict(), "optimizer": optimiser.state_dict(), "scheduler": scheduler.state_dict()}
            if schedule is not None:
                snapshot["schedule"] = schedule.state_dict()
            write_checkpoint(path, {**snapshot, **run, "step": step})

    bar = tqdm(total=total, initial=start, desc="fine-tune", unit="step", disable=not progress, dynamic_ncols=True)
    with bar:
        if start < total:
            for step, x, y in batch_stream(data.train, batch_size, seed, start):
                loss = train_step(model, data, optimiser, scheduler, step, seed, x, y, teacher, schedule)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if step + 1 == total:
                    break
                if (step + 1) % checkpoint_every == 0:
                    save(step + 1)
            save(total)
    return model.eval()
