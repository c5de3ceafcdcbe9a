"""Training and fine-tuning: one loop for baselines (cross-entropy) and pruned networks
(knowledge distillation from the original plus cross-entropy).

Why one loop: a pruned network only keeps its accuracy if it is fine-tuned the way the
baseline was trained, so both go through :func:`finetune` -- SGD with momentum, a cosine
learning-rate schedule over the total number of steps, optional CIFAR augmentation.

Reproducibility: the data order of epoch ``e`` is a permutation drawn from a generator
seeded with ``(seed, e)`` and augmentation from one seeded with ``(seed, step)``, so the
same seed gives bit-identical weights on CPU, and a run resumed from a per-epoch
checkpoint continues exactly where the interrupted one stopped.

Scaling out: started under ``torchrun --nproc_per_node=K`` (``RANK``/``WORLD_SIZE`` in the
environment) the same call joins a ``torch.distributed`` process group (gloo on CPU, nccl
on GPU), wraps the model in ``DistributedDataParallel`` and gives each rank its share of
every epoch's permutation. ``batch_size`` stays the *global* batch (split over the ranks),
so the schedule and step count do not depend on K. Only rank 0 draws progress and writes
checkpoints.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from prunec.data import Split
from prunec.errors import UserError, check_seed
from prunec.interrupts import raise_if_interrupted

_CHECKPOINT_RE = re.compile(r"epoch_(\d+)\.pt$")


@dataclass
class TrainResult:
    """What a training run did. ``loss``/``accuracy`` are the last epoch's running means
    over the training batches (all ranks), accuracy in %."""

    steps: int
    total_steps: int
    steps_per_epoch: int
    epochs: float
    loss: float
    accuracy: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_step: int | None = None
    rank: int = 0
    world_size: int = 1

    def epochs_trained(self, requested: float) -> float:
        """The epochs a checkpoint should record: ``requested`` when the run went all the way, else
        the share of an epoch it ran before ``max_steps`` stopped it (4 decimals)."""
        return requested if self.steps >= math.ceil(requested * self.steps_per_epoch) else round(self.epochs, 4)

    @property
    def computed_with(self) -> list[dict[str, Any]]:
        """Runs of epochs computed on one device with one CPU thread count, in order: float sums
        depend on both, so a run resumed on other ones does not match an uninterrupted run bit for
        bit. ``[{"epochs": [first, last], "device": "cpu", "threads": 1}, ...]`` (None where a
        checkpoint from an earlier prunec did not record it)."""
        runs: list[dict[str, Any]] = []
        for h in self.history:
            where = {"device": h.get("device"), "threads": h.get("threads")}
            epoch = math.ceil(h["epoch"] - 1e-9)
            if runs and {k: runs[-1][k] for k in where} == where:
                runs[-1]["epochs"][1] = epoch
            else:
                runs.append({"epochs": [epoch, epoch], **where})
        return runs


# --------------------------------------------------------------------------- helpers


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None means the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r} ({_first_line(exc)}); use cpu or cuda") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: this torch sees no CUDA GPU; use cpu")
    return chosen


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def fingerprint(module: nn.Module | None) -> str | None:
    """A short hash of a module's parameters and buffers: which network a checkpoint started from."""
    if module is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())  # any dtype
    return digest.hexdigest()[:16]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _seed_for(seed: int, index: int) -> int:
    """A reproducible 63-bit seed for one epoch / step of run ``seed``."""
    return (seed * 1_000_003 + index * 7_919 + 12_345) % (2**63 - 1)


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after ``padding``-pixel zero padding plus random horizontal flip, per sample.

    Done on tensors (no PIL, no worker processes) because our splits live in memory already
    normalised; zero padding in normalised space is the data set's mean colour.
    """
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    dy, dx, flip = dy.to(x.device), dx.to(x.device), flip.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # [n, h]
    cols = dx[:, None] + torch.arange(w, device=x.device)  # [n, w]
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [n, h, w, c]
    out = out.permute(0, 3, 1, 2)
    return torch.where(flip[:, None, None, None], out.flip(3), out).contiguous()


def distillation_loss(
    logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None,
    alpha: float, temperature: float,
) -> torch.Tensor:
    """``(1-alpha)*CE + alpha*T^2*KL`` (Hinton et al. 2015); plain CE without a teacher.

    The KL term is the divergence between the teacher's and the student's softened
    distributions (``F.kl_div(log_softmax(s/T), softmax(t/T))``); ``T^2`` keeps its gradient
    on the scale of the CE term as T changes.
    """
    ce = F.cross_entropy(logits, targets)
    if teacher_logits is None or alpha == 0.0:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * t * t * kl


# --------------------------------------------------------------------------- distributed


def _distributed_env() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and dist.is_available()


def _setup_distributed(device: str | torch.device | None) -> tuple[bool, torch.device]:
    """Join the torchrun process group if we are under torchrun; returns (created, device)."""
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        run_device = torch.device("cuda", local)
    else:
        run_device = torch.device("cpu")
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    return created, run_device


# --------------------------------------------------------------------------- checkpoints


def latest_checkpoint(directory: str) -> str | None:
    """The highest-numbered ``epoch_K.pt`` in ``directory`` (None if there is none)."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "epoch_*.pt")):
        match = _CHECKPOINT_RE.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def _save_atomic(payload: dict[str, Any], path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())  # the previous epoch's file may be deleted next: this one must be whole
    os.replace(tmp, path)


def _load_checkpoint(path: str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one user-facing message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot resume from {path}: {first}; delete it (or pass resume=False / --no-resume)") from None


# --------------------------------------------------------------------------- the loop


def finetune(
    model: nn.Module,
    train: Split,
    *,
    teacher: nn.Module | None = None,
    epochs: float = 1.0,
    lr: float = 0.05,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    kd_alpha: float = 0.5,
    kd_temperature: float = 4.0,
    seed: int = 0,
    max_steps: int | None = None,
    checkpoint_dir: str | None = None,
    resume: bool = True,
    augment: bool = False,
    progress: bool = True,
    description: str = "fine-tune",
    device: str | torch.device | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    keep_zeros: bool = False,
    keep_last_checkpoint_only: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``train``; returns a :class:`TrainResult`.

    Without ``teacher`` the loss is cross-entropy (how baselines are trained); with one it
    is :func:`distillation_loss`, so a pruned network learns from the original's soft
    outputs too. ``epochs`` may be fractional (quick searches); ``max_steps`` caps the step
    count. The cosine schedule spans the steps actually run. With ``checkpoint_dir`` the
    state after every epoch goes to ``epoch_{k}.pt`` (model, optimizer, scheduler, step),
    and ``resume`` restarts from the latest one. ``on_epoch`` receives each epoch's summary
    (on rank 0). With ``keep_zeros`` the conv/linear weights that are exactly zero at the
    start stay zero (an unstructured pruning mask survives fine-tuning). With
    ``keep_last_checkpoint_only`` an epoch's checkpoint replaces the one before (a resume needs
    only the latest). The model is returned in eval mode on the device it came on.
    """
    if len(train) == 0:
        raise UserError("the training split is empty")
    if not epochs > 0:
        raise UserError(f"epochs must be positive, got {epochs}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if not lr > 0:
        raise UserError(f"learning rate must be positive, got {lr}")
    if not 0.0 <= kd_alpha <= 1.0:
        raise UserError(f"kd_alpha must be in [0, 1], got {kd_alpha}")
    if not kd_temperature > 0:
        raise UserError(f"kd_temperature must be positive, got {kd_temperature}")
    seed = check_seed(seed)
    if max_steps is not None and max_steps < 1:
        raise UserError(f"max_steps must be at least 1, got {max_steps}")
    for name, value in (("epochs", epochs), ("learning rate", lr), ("momentum", momentum),
                        ("weight decay", weight_decay)):
        if not (math.isfinite(value) and value >= 0):  # NaN fails too
            raise UserError(f"{name} must be a finite number, at least 0, got {value}")

    distributed = _distributed_env()
    created_group = False
    if distributed:
        created_group, run_device = _setup_distributed(device)
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        run_device, rank, world = default_device(device), 0, 1
    home = _model_device(model)
    try:
        result = _run(model, train, teacher, epochs, lr, batch_size, momentum, weight_decay, kd_alpha,
                      kd_temperature, seed, max_steps, checkpoint_dir, resume, augment,
                      progress and rank == 0, description, run_device, rank, world, distributed,
                      on_epoch, keep_zeros, keep_last_checkpoint_only)
        if distributed:
            dist.barrier()  # no rank tears the group down while a peer still talks to it
        return result
    finally:
        model.to(home).eval()
        if teacher is not None:
            teacher.to(home)
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


#: The run settings every checkpoint records; later ones are compared where a checkpoint has them.
_FIRST_RUN_KEYS = ("seed", "samples", "batch_size", "world_size", "steps_per_epoch", "total_steps")


def _run(
    model: nn.Module, train: Split, teacher: nn.Module | None, epochs: float, lr: float,
    batch_size: int, momentum: float, weight_decay: float, kd_alpha: float, kd_temperature: float,
    seed: int, max_steps: int | None, checkpoint_dir: str | None, resume: bool, augment: bool,
    show: bool, description: str, device: torch.device, rank: int, world: int,
    distributed: bool, on_epoch: Callable[[dict[str, float]], None] | None, keep_zeros: bool = False,
    keep_last_only: bool = False,
) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(seed)  # dropout and anything else drawing from the global generator
    n = len(train)
    per_rank = math.ceil(n / world)  # each rank's share of one epoch (padded like DistributedSampler)
    local_batch = max(1, math.ceil(batch_size / world))
    # drop the ragged last batch (BatchNorm dislikes tiny batches) unless it is all there is
    steps_per_epoch = max(1, per_rank // local_batch)
    total = math.ceil(epochs * steps_per_epoch)
    if max_steps is not None:
        total = min(total, max_steps)
    run_info = {"seed": seed, "samples": n, "batch_size": batch_size, "world_size": world,
                "steps_per_epoch": steps_per_epoch, "total_steps": total,
                # what else the result depends on (checkpoints made before these were recorded lack them)
                "start": fingerprint(model), "teacher": fingerprint(teacher) if kd_alpha > 0 else None,
                "momentum": momentum, "weight_decay": weight_decay, "kd_alpha": kd_alpha,
                "kd_temperature": kd_temperature, "augment": augment, "keep_zeros": keep_zeros}

    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("the model has no trainable parameters")
    masks = zero_weight_masks(model) if keep_zeros else []
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))

    step, history, resumed_from = 0, [], None
    # what each epoch was computed with (float sums depend on it), recorded in its history entry
    computed_on = {"device": device.type, "threads": torch.get_num_threads() if device.type == "cpu" else None}
    show_notes = rank == 0
    if checkpoint_dir is not None:
        if not str(checkpoint_dir).strip():
            raise UserError("the checkpoint directory is an empty name")
        from prunec.outdir import ensure_writable_directory

        ensure_writable_directory(Path(checkpoint_dir), f"cannot use checkpoint directory {checkpoint_dir}")
        if rank == 0:  # half-written checkpoints of a killed run (whole ones are renamed into place)
            for stale in glob.glob(os.path.join(glob.escape(checkpoint_dir), "epoch_*.pt.tmp-*")):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
        latest = latest_checkpoint(checkpoint_dir) if resume else None
        if latest is not None:
            state = _load_checkpoint(latest)
            groups = (state.get("optimizer") or {}).get("param_groups") or [{}]
            saved_lr = groups[0].get("initial_lr", lr)  # not in run_info: older checkpoints lack it there
            saved = state.get("run") or {}
            differ = [k for k in run_info if (k in saved or k in _FIRST_RUN_KEYS) and saved.get(k) != run_info[k]]
            differ += ["lr"] if not math.isclose(saved_lr, lr) else []
            if differ:
                was = ", ".join(f"{k} {saved_lr if k == 'lr' else saved.get(k)!r}" for k in differ)
                now = ", ".join(f"{k} {lr if k == 'lr' else run_info[k]!r}" for k in differ)
                raise UserError(f"{latest} is from a different run ({was}; now {now}); delete {checkpoint_dir}, use "
                                "another checkpoint directory or pass resume=False / --no-resume")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            step = resumed_from = int(state["step"])
            history = [dict(h) for h in state.get("history", [])]
            before = {k: history[-1].get(k) for k in computed_on} if history else computed_on
            if before != computed_on and show_notes:
                print(f"note: {latest} was computed on {_where(before)}, this run on {_where(computed_on)}: the "
                      "result will not match an uninterrupted run bit for bit", file=sys.stderr, flush=True)

    # keep the split on the GPU when it fits comfortably: no per-step host copies
    x_all, y_all = train.x, train.y
    if device.type == "cuda" and x_all.numel() * x_all.element_size() < 2 * 1024**3:
        x_all, y_all = x_all.to(device), y_all.to(device)

    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def epoch_order(epoch: int) -> torch.Tensor:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed_for(seed, epoch)))
        if world > 1:
            pad = per_rank * world - n
            if pad:
                perm = torch.cat([perm, perm[:pad]])
            perm = perm[rank::world]
        return perm

    bar = _Progress(description, total, step, show)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*count, correct, count
    order_epoch, order = -1, None
    model.train()
    try:
        while step < total:
            raise_if_interrupted()
            epoch, position = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, epoch_order(epoch)
            idx = order[position * local_batch:(position + 1) * local_batch]
            idx = idx.to(x_all.device)
            xb, yb = x_all[idx].to(device, non_blocking=True), y_all[idx].to(device, non_blocking=True)
            if augment:
                xb = augment_batch(xb, torch.Generator().manual_seed(_seed_for(seed, step) ^ rank))
            logits = _train_forward(net, xb)
            teacher_logits = None
            if teacher is not None and kd_alpha > 0:
                with torch.no_grad():
                    teacher_logits = teacher(xb)
            loss = distillation_loss(logits, yb, teacher_logits, kd_alpha, kd_temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if masks:
                with torch.no_grad():
                    for weight, keep in masks:
                        weight.mul_(keep)
            scheduler.step()
            step += 1
            with torch.no_grad():
                count = yb.numel()
                sums += torch.stack([loss.detach().double() * count,
                                     (logits.argmax(1) == yb).sum().double(),
                                     torch.tensor(float(count), dtype=torch.float64, device=device)])
            epoch_done = step % steps_per_epoch == 0 or step == total
            if show and (step % 10 == 0 or epoch_done):
                local = sums.tolist()
                bar.update(step, local[0] / max(local[2], 1), 100.0 * local[1] / max(local[2], 1),
                           epoch + 1)
            if epoch_done:
                if distributed:
                    dist.all_reduce(sums)
                loss_sum, correct, seen = sums.tolist()
                if not math.isfinite(loss_sum):  # every later number would be noise: stop, keep no checkpoint
                    raise UserError(f"fine-tuning diverged: the loss is {loss_sum / max(seen, 1)} in epoch "
                                    f"{epoch + 1} at learning rate {lr:g}; lower --lr")
                summary = {"epoch": step / steps_per_epoch, "step": float(step),
                           "loss": loss_sum / max(seen, 1), "accuracy": 100.0 * correct / max(seen, 1),
                           "lr": optimizer.param_groups[0]["lr"],
                           "seconds": time.perf_counter() - started, **computed_on}
                history.append(summary)
                sums.zero_()
                if distributed:
                    _sync_buffers(model)
                if checkpoint_dir is not None and rank == 0:
                    k = math.ceil(step / steps_per_epoch)
                    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "step": step,
                               "rng": torch.get_rng_state(), "history": history, "run": run_info}
                    if device.type == "cuda":
                        payload["cuda_rng"] = torch.cuda.get_rng_state(device)
                    _save_atomic(payload, os.path.join(checkpoint_dir, f"epoch_{k}.pt"))
                    if keep_last_only:
                        for older in glob.glob(os.path.join(glob.escape(checkpoint_dir), "epoch_*.pt")):
                            if os.path.basename(older) != f"epoch_{k}.pt":
                                with contextlib.suppress(FileNotFoundError):
                                    os.remove(older)
                if on_epoch is not None and rank == 0:
                    on_epoch(summary)
    finally:
        bar.close()
    if distributed and step == resumed_from:
        _sync_buffers(model)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise UserError("fine-tuning diverged: the network's weights hold NaN or inf after the last step; "
                        "lower --lr (or --momentum)")
    last = history[-1] if history else {"loss": float("nan"), "accuracy": float("nan")}
    return TrainResult(steps=step, total_steps=total, steps_per_epoch=steps_per_epoch,
                       epochs=step / steps_per_epoch, loss=last["loss"], accuracy=last["accuracy"],
                       seconds=time.perf_counter() - started, history=history,
                       resumed_from_step=resumed_from, rank=rank, world_size=world)


def _where(computed_on: dict[str, Any]) -> str:
    threads = computed_on.get("threads")
    where = computed_on.get("device") or "an unrecorded device"
    return f"{where} with {threads} thread{'' if threads == 1 else 's'}" if threads else where


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _train_forward(net: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """One training forward; a batch BatchNorm cannot normalise (one value per channel) is the user's data size."""
    try:
        return net(xb)
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise UserError(f"a training batch holds {len(xb)} image(s), and a BatchNorm layer needs more than one "
                        "value per channel to train: give more training images (or a larger batch size)") from None


def zero_weight_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, nonzero mask) for every conv/linear weight holding exact zeros."""
    weights = [m.weight for m in model.modules() if isinstance(m, _WEIGHTED) and m.weight is not None]
    return [(w, (w != 0).to(w.dtype)) for w in weights if bool((w == 0).any())]


def all_zero_layers(model: nn.Module) -> list[str]:
    """Conv/linear layers whose weights are all zero: ``keep_zeros`` would hold them there for good,
    which is a pruning mask's intent but not a zero-initialised layer's."""
    return [name for name, m in model.named_modules()
            if isinstance(m, _WEIGHTED) and m.weight is not None and m.weight.numel() and not m.weight.any()]


def _sync_buffers(model: nn.Module) -> None:
    """Give every replica rank 0's BatchNorm statistics.

    DDP averages gradients, so parameters agree, but each rank updates its running
    mean/variance from its own last batch; broadcasting makes the replicas identical.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


class _Progress:
    """A transient rich progress bar with loss and running accuracy, on stderr beside the log.

    A no-op when hidden, and when stderr is not a terminal: there a bar cannot redraw and
    would only leave an empty line in the log.
    """

    def __init__(self, description: str, total: int, done: int, show: bool) -> None:
        from prunec.terminal import make_console

        self.progress = None
        console = make_console(stderr=True)
        if not show or not console.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]}  loss {task.fields[loss]}  acc {task.fields[acc]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=True, console=console)
        self.task = self.progress.add_task(description, total=total, completed=done,
                                           epoch="-", loss="-", acc="-")
        self.progress.start()

    def update(self, step: int, loss: float, accuracy: float, epoch: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, epoch=epoch, loss=f"{loss:.3f}",
                                 acc=f"{accuracy:.1f}%")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


# --------------------------------------------------------------------------- inference


@torch.no_grad()
def predict(
    model: nn.Module, split_or_tensor: Split | torch.Tensor, batch_size: int = 512,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits of ``model`` (eval mode, no grad) for a split or an input tensor, on the CPU.

    Batched so a whole test split never has to fit one forward pass; the model goes back
    to the device (and train/eval mode) it came with.
    """
    x = split_or_tensor.x if isinstance(split_or_tensor, Split) else split_or_tensor
    run_device = default_device(device)
    home, was_training = _model_device(model), model.training
    model.to(run_device).eval()
    try:
        outs = []
        for i in range(0, len(x), batch_size):
            raise_if_interrupted()
            outs.append(model(x[i:i + batch_size].to(run_device)).float().cpu())
    finally:
        model.to(home).train(was_training)
    if not outs:
        raise UserError("nothing to predict: the input is empty")
    return torch.cat(outs)


def evaluate(
    model: nn.Module, split: Split, batch_size: int = 512, device: str | torch.device | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on ``split``, in %."""
    logits = predict(model, split, batch_size, device)
    return 100.0 * (logits.argmax(1) == split.y).float().mean().item()


__all__ = ["TrainResult", "finetune", "latest_checkpoint", "evaluate", "predict", "distillation_loss", "augment_batch",
           "default_device"]
