"""``fit``: train one model on one task with a profile, keep the top-k checkpoints, resume after a kill.

Rounds (protocol §3, §6): each round draws every training case ``repeats`` times (or as often as
the profile's fixed step count needs), shuffled, in batches; a validation on the §4 grid follows
each round. After every validation the top-k weights are updated (a newcomer enters only when
strictly better than the worst kept) and the resumable ``last.pt`` is written atomically with the
weights, the optimiser, the RNG states and the progress. A restarted ``fit`` with the same
arguments continues from it; a finished one returns at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench3d2d._console import log_to_file, progress_bar
from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine._precision import amp_dtype, autocast, ensemble_probs, to_channels_last
from bench3d2d.engine._sources import (
    CaseSource,
    eval_target,
    make_batch,
    require_targets,
    round_schedule,
)
from bench3d2d.engine.acceleration import accelerate
from bench3d2d.engine.profiles import Profile, get_profile
from bench3d2d.engine.tasks import Task
from bench3d2d.models import create_model, model_info

log = logging.getLogger("bench3d2d.engine")

LAST = "last.pt"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the last good state is left on disk."""


class ResumeMismatchError(ValueError):
    """``out_dir`` holds a resumable state of a run with a different configuration."""


@dataclass(frozen=True)
class Checkpoint:
    """One kept checkpoint: file, validation score and the step after which it was taken."""

    path: Path
    score: float
    step: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (path as text)."""
        return {"path": str(self.path), "score": self.score, "step": self.step}


@dataclass
class FitResult:
    """What ``fit`` leaves behind: the kept checkpoints (best first) and the validation history."""

    checkpoints: list[Checkpoint]
    history: list[dict[str, float]]
    steps: int
    seconds: float
    resumed_from_step: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Checkpoint:
        """The checkpoint with the highest validation score."""
        return self.checkpoints[0]

    @property
    def k(self) -> int:
        """How many checkpoints were kept (fewer than top-k on very short runs)."""
        return len(self.checkpoints)


# --------------------------------------------------------------------------------------------
# Models and devices


def build_model(name: str, depth: int, in_channels: int = 1, out_channels: int = 1,
                **kwargs: Any) -> nn.Module:
    """``create_model`` plus the record (``build_info``) that checkpoints store to rebuild it."""
    model = create_model(name, in_channels=in_channels, out_channels=out_channels, depth=depth, **kwargs)
    accelerate(model)  # same function, faster CPU convolutions (docs/performance.md)
    model.build_info = {
        "model": name,
        "depth": int(depth),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "kwargs": dict(kwargs),
    }
    return model


def model_from_checkpoint(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model recorded in a checkpoint and load its weights (evaluation mode)."""
    meta = ckpt_io.read(path).get("meta", {})
    if "model" not in meta or "depth" not in meta:
        raise ckpt_io.CheckpointError(f"checkpoint {path} does not record which model it holds")
    model = build_model(meta["model"], meta["depth"], meta.get("in_channels", 1),
                        meta.get("out_channels", 1), **dict(meta.get("kwargs", {})))
    ckpt_io.load_weights(model, path)
    return model.to(device).eval()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def size_rule_of(model: nn.Module):
    """The bound size rule of a built model (from the model, else from the registry)."""
    rule = getattr(model, "size_rule", None)
    if rule is None:
        rule = model_info(model.registry_name).size_rule
    return rule


def training_crop(model: nn.Module, profile: Profile) -> tuple[int, int]:
    """The profile's crop, enlarged to the smallest size the model's rule accepts."""
    return size_rule_of(model).smallest_valid(*profile.crop)


def make_optimizer(model: nn.Module, profile: Profile) -> torch.optim.Optimizer:
    """The profile's optimiser over every parameter (weight decay on all, as the reference)."""
    name = profile.optimizer.lower()
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=profile.lr, momentum=profile.momentum,
                               weight_decay=profile.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=profile.lr, betas=profile.betas, weight_decay=profile.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=profile.lr, betas=profile.betas,
                                 weight_decay=profile.weight_decay)
    raise ValueError(f"unknown optimizer {profile.optimizer!r}; choose sgd, adam or adamw")


# --------------------------------------------------------------------------------------------
# Logging and progress


def run_log(path: Path | None) -> contextlib.AbstractContextManager[None]:
    """Send the ``bench3d2d`` logger to ``path`` (appending) for the duration of the block."""
    return log_to_file(path)


class _Progress:
    """A rich progress bar with loss and score, or nothing when disabled or not on a terminal."""

    def __init__(self, enabled: bool, total: int, description: str, done: int = 0) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = progress_bar("loss {task.fields[loss]}  score {task.fields[score]}")
            self.bar.start()
            self.task = self.bar.add_task(description, total=total, completed=done, loss="-", score="-")

    def update(self, advance: int = 0, **fields: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=advance, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --------------------------------------------------------------------------------------------
# Validation and top-k


def validate(model: nn.Module, task: Task, source: CaseSource, amp: bool, batch: int = 1,
             channels_last: bool = False) -> float:
    """Mean per-case validation score (Dice or SSIM) on the evaluation grid, model in eval mode."""
    scores = []
    for cid, prob in ensemble_probs([model], source, batch=batch, amp=amp, channels_last=channels_last):
        y = eval_target(source, cid, task.target, task.binary_target)
        scores.append(task.score(torch.from_numpy(prob)[None, None], y))
    return float(np.mean(scores))


def update_topk(kept: list[Checkpoint], score: float, step: int, k: int,
                path: Path) -> tuple[list[Checkpoint], Checkpoint | None, bool]:
    """Top-k rule of §7: returns (new list best-first, evicted checkpoint or None, entered?).

    A newcomer enters when fewer than k are kept, or when strictly better than the worst kept;
    ties keep the earlier checkpoint. A NaN score never enters.
    """
    if math.isnan(score):
        return kept, None, False
    ordered = sorted(kept, key=lambda c: (-c.score, c.step))
    if len(ordered) < k:
        new = Checkpoint(path, score, step)
        return sorted([*ordered, new], key=lambda c: (-c.score, c.step)), None, True
    worst = ordered[-1]
    if score > worst.score:
        new = Checkpoint(path, score, step)
        return sorted([*ordered[:-1], new], key=lambda c: (-c.score, c.step)), worst, True
    return ordered, None, False


# --------------------------------------------------------------------------------------------
# Resumable state


def _config_fingerprint(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _precision(device: torch.device, amp: bool) -> str:
    """``"bf16 autocast"`` or ``"float32"``, as the log and the run record say it."""
    return "bf16 autocast" if amp_dtype(device, amp) is not None else "float32"


def _rng_state(np_rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"numpy": np_rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: Mapping[str, Any], np_rng: np.random.Generator, device: torch.device) -> None:
    np_rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_last(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, np_rng: np.random.Generator,
               device: torch.device, progress: dict[str, Any], config: Mapping[str, Any]) -> None:
    """Write the resumable state; once finished, only the record (the top-k files hold the weights)."""
    finished = bool(progress.get("finished"))
    ckpt_io.atomic_torch_save(
        {
            "format": ckpt_io.FORMAT,
            "kind": "last",
            "meta": {**ckpt_io.architecture(model), "config": dict(config),
                     "config_fingerprint": _config_fingerprint(config)},
            "state_dict": {} if finished else {k: v.detach().cpu().clone()
                                                for k, v in model.state_dict().items()},
            **({} if finished else {"optimizer": optimizer.state_dict(), "rng": _rng_state(np_rng, device)}),
            "progress": progress,
        },
        path,
    )


def _progress_record(step: int, round_done: int, kept: list[Checkpoint], history: list[dict],
                     finished: bool, seconds: float) -> dict[str, Any]:
    return {
        "step": step,
        "round": round_done,
        "finished": finished,
        "seconds": seconds,
        "topk": [{"file": c.path.name, "score": c.score, "step": c.step} for c in kept],
        "history": history,
    }


# --------------------------------------------------------------------------------------------
# fit


def fit(
    model: nn.Module,
    task: Task,
    train: CaseSource,
    val: CaseSource,
    *,
    profile: Profile | str,
    seed: int,
    out_dir: Path,
    init_weights: Path | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = False,
    on_validation: Callable[[int, float], None] | None = None,
    description: str = "train",
) -> FitResult:
    """Train ``model`` on ``task``; keep the top-k checkpoints under ``out_dir/checkpoints``.

    ``init_weights`` (e.g. SSL pre-trained weights) are loaded strictly before training.
    ``on_validation(step, score)`` is called after each validation (it may raise to stop,
    e.g. Optuna's ``TrialPruned``). Resumes from ``out_dir/checkpoints/last.pt`` when present.
    On return ``model`` holds the weights of the best checkpoint.
    """
    profile = get_profile(profile)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    require_targets(train, task.target, f"training set for target {task.target!r}")
    require_targets(val, task.target, f"validation set for target {task.target!r}")

    train_ids = list(train.case_ids)
    batch = profile.batch_for(task.name)
    crop = training_crop(model, profile)
    steps_per_round = profile.steps_in_round(len(train_ids), batch)
    total_steps = steps_per_round * profile.rounds
    config = {
        "profile": profile.to_dict(),
        "task": task.to_dict(),
        "seed": int(seed),
        "crop": list(crop),
        "batch": batch,
        "train_cases": train_ids,
        "val_cases": list(val.case_ids),
        "init_weights": str(init_weights) if init_weights else None,
    }

    with run_log(out_dir / "log.txt"):
        return _fit(model, task, train, val, profile, seed, ckpt_dir, init_weights, dev, progress,
                    on_validation, description, train_ids, batch, crop, steps_per_round, total_steps, config)


def _fit(model, task, train, val, profile, seed, ckpt_dir, init_weights, dev, progress, on_validation,
         description, train_ids, batch, crop, steps_per_round, total_steps, config) -> FitResult:
    last_path = ckpt_dir / LAST
    np_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    model.to(dev)
    if profile.channels_last:
        to_channels_last(model)
    optimizer = make_optimizer(model, profile)
    kept: list[Checkpoint] = []
    history: list[dict[str, float]] = []
    start_round, step, elapsed_before = 0, 0, 0.0

    if last_path.exists():
        state = ckpt_io.read(last_path)
        fp = state["meta"].get("config_fingerprint")
        if fp != _config_fingerprint(config):
            raise ResumeMismatchError(
                f"{last_path} belongs to a run with a different configuration; "
                "use another output folder or delete it to start again"
            )
        ckpt_io.check_architecture(model, state["meta"], last_path)
        prog = state["progress"]
        start_round, step, elapsed_before = int(prog["round"]), int(prog["step"]), float(prog["seconds"])
        history = list(prog["history"])
        kept = [Checkpoint(ckpt_dir / c["file"], float(c["score"]), int(c["step"])) for c in prog["topk"]]
        missing = [c.path for c in kept if not c.path.exists()]
        if missing:
            raise ckpt_io.CheckpointError(f"{last_path} lists checkpoints that are missing: {missing}")
        _remove_strays(ckpt_dir, kept)
        if prog.get("finished"):
            log.info("fit already finished in %s (step %d); nothing to do", ckpt_dir, step)
            ckpt_io.load_weights(model, kept[0].path)
            return FitResult(kept, history, step, elapsed_before, step, config)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_rng(state["rng"], np_rng, dev)
        log.info("resuming from %s at round %d, step %d", last_path, start_round, step)
    else:
        _remove_strays(ckpt_dir, [])
        if init_weights is not None:
            meta = ckpt_io.load_weights(model, Path(init_weights))
            log.info("initialised from %s (%s)", init_weights, ckpt_io.describe(meta))
        torch.manual_seed(int(seed))
        log.info("fit %s: task %s, %d training / %d validation cases, %d rounds x %d steps, batch %d, "
                 "crop %s, profile %s, device %s, precision %s",
                 getattr(model, "registry_name", type(model).__name__),
                 task.name, len(train_ids), len(val.case_ids), profile.rounds, steps_per_round, batch,
                 crop, profile.name, dev, _precision(dev, profile.amp))

    resumed_from = step
    t0 = time.perf_counter()
    bar = _Progress(progress, total_steps, description, done=step)
    try:
        model.train()
        for rnd in range(start_round, profile.rounds):
            schedule = round_schedule(len(train_ids), steps_per_round, batch, profile.repeats, np_rng)
            losses = []
            for idx in schedule:
                x, y = make_batch(train, [train_ids[i] for i in idx], task.target, crop,
                                  task.binary_target, np_rng)
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                if profile.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                optimizer.zero_grad(set_to_none=True)
                with autocast(dev, profile.amp):
                    logits = model(x)
                loss = task.loss(logits.float(), y)
                value = float(loss.detach())
                if not math.isfinite(value):
                    good = last_path if last_path.exists() else None
                    raise NonFiniteLossError(
                        f"training loss became {value} at step {step + 1} (round {rnd + 1}); stopped. "
                        + (f"The last good state is {good}." if good else "No checkpoint was written yet.")
                    )
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(value)
                bar.update(1, loss=f"{value:.4f}")
            score = validate(model, task, val, profile.amp, profile.eval_batch, profile.channels_last)
            mean_loss = float(np.mean(losses))
            history.append({"round": rnd + 1, "step": step, "loss": mean_loss, "score": score})
            new_path = ckpt_dir / f"top_step{step:07d}.pt"
            kept, evicted, entered = update_topk(kept, score, step, profile.top_k, new_path)
            if entered:
                ckpt_io.save_weights(model, new_path, score=score, step=step, task=task.name,
                                     target=task.target, score_name=task.score_name)
            finished = rnd + 1 == profile.rounds
            elapsed = elapsed_before + time.perf_counter() - t0
            _save_last(last_path, model, optimizer, np_rng, dev,
                       _progress_record(step, rnd + 1, kept, history, finished, elapsed), config)
            if evicted is not None:
                evicted.path.unlink(missing_ok=True)
            log.info("round %d/%d step %d: loss %.4f, validation %s %.4f%s", rnd + 1, profile.rounds, step,
                     mean_loss, task.score_name, score, " (kept)" if entered else "")
            bar.update(0, score=f"{score:.4f}")
            if on_validation is not None:
                on_validation(step, score)
    finally:
        bar.close()
    seconds = elapsed_before + time.perf_counter() - t0
    if not kept:
        raise RuntimeError("no checkpoint was kept (every validation score was NaN)")
    log.info("fit done: %d steps in %.1f s; kept %d checkpoints, best %s %.4f at step %d", step, seconds,
             len(kept), task.score_name, kept[0].score, kept[0].step)
    ckpt_io.load_weights(model, kept[0].path)
    return FitResult(kept, history, step, seconds, resumed_from, config)


def _remove_strays(ckpt_dir: Path, kept: list[Checkpoint]) -> None:
    """Delete top-k files not listed in the resumable state (left by a kill mid-round)."""
    keep = {c.path.name for c in kept}
    for p in ckpt_dir.glob("top_step*.pt"):
        if p.name not in keep:
            p.unlink(missing_ok=True)
