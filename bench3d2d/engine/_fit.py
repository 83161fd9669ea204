"""``fit``: train one model on one task with a profile, keep the top-k checkpoints, resume after a kill.

Rounds (docs/protocol.md §3, §6): each round draws every training case ``repeats`` times (or as often as
the profile's fixed step count needs), shuffled, in batches; a validation on the §4 grid follows
each round. A plateau profile (``Profile.converges``) validates every ``validate_every`` steps
instead and stops when the score has not improved by more than ``min_delta`` for ``patience``
validations (counted from the first score above zero) once ``min_steps`` are done (reason
``plateau``), or at ``max_steps`` (``max_steps``); a round-based profile stops after its rounds
(``rounds``). ``FitResult.stop`` records why and when.
After every validation the top-k weights are updated (a newcomer enters only when strictly better
than the worst kept) and the resumable ``last.pt`` is written atomically with the weights, the
optimiser, the RNG states, the progress and (plateau profiles) the patience state. A restarted
``fit`` with the same arguments continues from it; a finished one returns at once.

Self-healing: while a run is in progress each top-k file also carries the resumable state of its
step (dropped once the fit finishes). When ``last.pt`` cannot be read (e.g. truncated by a full
disk) or lists missing files, ``fit`` resumes from the newest readable top-k file whose recorded
top-k files all still exist, else restarts from scratch, and logs which. Training is
deterministic, so either way the result equals that of an uninterrupted fit.
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
from bench3d2d.engine._precision import Precision, autocast, ensemble_probs, to_channels_last
from bench3d2d.engine._sources import (
    CaseSource,
    eval_target,
    make_batch,
    require_targets,
    round_schedule,
)
from bench3d2d.engine.acceleration import accelerate, decelerate, is_accelerated
from bench3d2d.engine.config import FitOptions
from bench3d2d.engine.profiles import Profile, get_profile
from bench3d2d.engine.schedules import describe as describe_schedule
from bench3d2d.engine.schedules import lr_factor
from bench3d2d.engine.tasks import Task
from bench3d2d.models import create_model, model_info
from bench3d2d.results import sha256_file

log = logging.getLogger("bench3d2d.engine")

LAST = "last.pt"
#: In a step-budget fit, a round without a validation writes ``last.pt`` only every this many rounds.
CHECKPOINT_EVERY_ROUNDS = 5


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
    """What ``fit`` leaves behind: the kept checkpoints (best first), the validation history and why
    it stopped (``stop``: ``reason`` ``rounds``/``plateau``/``max_steps``, ``step``, ``validations``,
    and for plateau profiles the ``best_score`` the patience counted from and ``stale`` validations)."""

    checkpoints: list[Checkpoint]
    history: list[dict[str, float]]
    steps: int
    seconds: float
    resumed_from_step: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)
    stop: dict[str, Any] = field(default_factory=dict)

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


def build_model(
    name: str, depth: int, in_channels: int = 1, out_channels: int = 1, **kwargs: Any
) -> nn.Module:
    """``create_model`` plus the record (``build_info``) that checkpoints store to rebuild it.

    The model is plain; :func:`fit` and :func:`model_from_checkpoint` apply
    :func:`~bench3d2d.engine.acceleration.accelerate` where :func:`wants_acceleration` says so.
    """
    model = create_model(name, in_channels=in_channels, out_channels=out_channels, depth=depth, **kwargs)
    model.build_info = {
        "model": name,
        "depth": int(depth),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "kwargs": dict(kwargs),
    }
    return model


def model_from_checkpoint(
    path: Path, device: torch.device | str = "cpu", accelerated: bool | None = None
) -> nn.Module:
    """Rebuild the model recorded in a checkpoint and load its weights (evaluation mode).

    ``accelerated``: apply :func:`~bench3d2d.engine.acceleration.accelerate` (``None``: on CPU only).
    """
    meta = ckpt_io.read(path).get("meta", {})
    if "model" not in meta or "depth" not in meta:
        raise ckpt_io.CheckpointError(f"checkpoint {path} does not record which model it holds")
    model = build_model(
        meta["model"],
        meta["depth"],
        meta.get("in_channels", 1),
        meta.get("out_channels", 1),
        **dict(meta.get("kwargs", {})),
    )
    dev = torch.device(device)
    if wants_acceleration(dev, accelerated):
        accelerate(model)
    ckpt_io.load_weights(model, path)
    return model.to(dev).eval()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def wants_acceleration(device: torch.device, choice: bool | None) -> bool:
    """Whether to apply ``accelerate``: ``choice`` when given, else only on CPU (where it was measured)."""
    return device.type == "cpu" if choice is None else bool(choice)


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
        return torch.optim.SGD(
            params, lr=profile.lr, momentum=profile.momentum, weight_decay=profile.weight_decay
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=profile.lr, betas=profile.betas, weight_decay=profile.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=profile.lr, betas=profile.betas, weight_decay=profile.weight_decay
        )
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


def validate(
    model: nn.Module, task: Task, source: CaseSource, amp: bool, batch: int = 1, channels_last: bool = False
) -> float:
    """Mean per-case validation score (Dice or SSIM) on the evaluation grid, model in eval mode."""
    scores = []
    for cid, prob in ensemble_probs([model], source, batch=batch, amp=amp, channels_last=channels_last):
        y = eval_target(source, cid, task.target, task.binary_target)
        scores.append(task.score(torch.from_numpy(prob)[None, None], y))
    return float(np.mean(scores))


def update_topk(
    kept: list[Checkpoint], score: float, step: int, k: int, path: Path
) -> tuple[list[Checkpoint], Checkpoint | None, bool]:
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


def _save_last(
    path: Path,
    model: nn.Module,
    resume: Mapping[str, Any],
    progress: dict[str, Any],
    config: Mapping[str, Any],
) -> None:
    """Write the resumable state; once finished, only the record (the top-k files hold the weights).

    ``resume``: the optimiser, RNG (and gradient scaler) states of :meth:`_FitRun.resume_state`.
    """
    finished = bool(progress.get("finished"))
    ckpt_io.atomic_torch_save(
        {
            "format": ckpt_io.FORMAT,
            "kind": "last",
            "meta": {
                **ckpt_io.architecture(model),
                "config": dict(config),
                "config_fingerprint": _config_fingerprint(config),
            },
            "state_dict": {}
            if finished
            else {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            **({} if finished else dict(resume)),
            "progress": progress,
        },
        path,
    )


def _progress_record(
    step: int,
    round_done: int,
    kept: list[Checkpoint],
    history: list[dict],
    finished: bool,
    seconds: float,
    plateau: Mapping[str, Any] | None = None,
    stop: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    out = {
        "step": step,
        "round": round_done,
        "finished": finished,
        "seconds": seconds,
        "topk": [{"file": c.path.name, "score": c.score, "step": c.step} for c in kept],
        "history": history,
    }
    if plateau is not None:  # only plateau profiles: round-based records keep their old form
        out["plateau"] = dict(plateau)
    if stop is not None:
        out["stop"] = dict(stop)
    return out


def plateau_update(state: Mapping[str, Any], score: float, min_delta: float) -> dict[str, Any]:
    """The patience state after one validation: ``best`` (the score improvements are measured from;
    None before the first finite score) and ``stale`` (validations since the last improvement). A score
    improves when it beats ``best`` by more than ``min_delta``; NaN never does.

    Patience counts from the first score above zero: while every score so far is <= 0 (a segmenter that
    predicts no lesion anywhere, Dice 0) the run has not started learning, and a model with a long flat
    start (IPN, docs/diagnostics.md) is not stopped on a plateau it has not reached yet; such a run
    trains to ``max_steps``."""
    best = state.get("best")
    if not math.isnan(score) and (best is None or score > best + min_delta):
        return {"best": score, "stale": 0}
    if not math.isnan(score) and score <= 0 and (best is None or best <= 0):
        return {"best": best, "stale": 0}
    return {"best": best, "stale": int(state.get("stale", 0)) + 1}


def _readable(path: Path) -> bool:
    try:
        ckpt_io.read(path)
    except (ckpt_io.CheckpointError, FileNotFoundError):
        return False
    return True


def _resumable_topk(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The resumable state a top-k file carries (written mid-run), when it and every top-k file its
    record lists are readable and it belongs to this configuration; else None."""
    try:
        ckpt = ckpt_io.read(path)
    except (ckpt_io.CheckpointError, FileNotFoundError):
        return None
    resume = ckpt.get("resume")
    if not isinstance(resume, Mapping) or resume.get("config_fingerprint") != fingerprint:
        return None
    listed = [path.parent / c["file"] for c in resume["progress"]["topk"]]
    if not all(p == path or _readable(p) for p in listed):
        return None
    return {"meta": ckpt.get("meta", {}), "state_dict": ckpt["state_dict"], **resume}


def _remove_strays(ckpt_dir: Path, kept: list[Checkpoint]) -> None:
    """Delete top-k files not listed in the resumable state (left by a kill mid-round)."""
    keep = {c.path.name for c in kept}
    for p in ckpt_dir.glob("top_step*.pt"):
        if p.name not in keep:
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# fit


def fit(
    model: nn.Module,
    task: Task,
    train: CaseSource,
    val: CaseSource,
    options: FitOptions | None = None,
    *,
    out_dir: Path | str,
    on_validation: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``task``; keep the top-k checkpoints under ``out_dir/checkpoints``.

    ``options`` (:class:`~bench3d2d.engine.config.FitOptions`): profile, seed, initial weights
    (e.g. SSL pre-trained, loaded strictly before training), compute settings, description.
    ``on_validation(step, score)`` is called after each validation (it may raise to stop, e.g.
    Optuna's ``TrialPruned``). Resumes from ``out_dir/checkpoints/last.pt`` when present; when that
    file cannot be read, from the newest top-k checkpoint that carries a resumable state, else from
    scratch (logged). On return ``model`` holds the weights of the best checkpoint.
    """
    run = _FitRun(model, task, train, val, options or FitOptions(), Path(out_dir))
    with run_log(Path(out_dir) / "log.txt"):
        done = run.restore()
        if done is not None:
            return done
        return run.train(on_validation)


class _FitRun:
    """One call of :func:`fit`: set-up, resume (or start, or heal), the rounds, the result."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train: CaseSource,
        val: CaseSource,
        options: FitOptions,
        out_dir: Path,
    ) -> None:
        self.model, self.task, self.train_src, self.val = model, task, train, val
        self.options = options
        self.profile = profile = get_profile(options.profile)
        self.seed = int(options.seed)
        self.ckpt_dir = out_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.last_path = self.ckpt_dir / LAST
        self.dev = resolve_device(options.compute.device)
        if options.compute.threads:
            torch.set_num_threads(int(options.compute.threads))
        if self.dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        require_targets(train, task.target, f"training set for target {task.target!r}")
        require_targets(val, task.target, f"validation set for target {task.target!r}")
        self.train_ids = list(train.case_ids)
        self.batch = profile.batch_for(task.name)
        self.crop = training_crop(model, profile)
        self.steps_per_round = profile.steps_in_round(len(self.train_ids), self.batch)
        self.total_steps = (
            int(profile.max_steps) if profile.converges else self.steps_per_round * profile.rounds
        )
        init = options.init_weights
        self.config = {
            "profile": profile.to_dict(),
            "task": task.to_dict(),
            "seed": self.seed,
            "crop": list(self.crop),
            "batch": self.batch,
            "train_cases": self.train_ids,
            "val_cases": list(val.case_ids),
            "init_weights": f"sha256:{sha256_file(init)}" if init else None,
        }
        self.kept: list[Checkpoint] = []
        self.history: list[dict[str, float]] = []
        self.start_round, self.step, self.elapsed_before = 0, 0, 0.0
        self.plateau: dict[str, Any] | None = {"best": None, "stale": 0} if profile.plateau else None
        self.warmup_steps = round(float(profile.warmup) * self.total_steps)
        self.cooldown_steps = round(float(profile.cooldown) * self.total_steps)
        self.stop: dict[str, Any] | None = None

    def _setup(self) -> None:
        """Model on the device (accelerated where wanted), optimiser, gradient scaler, data RNG."""
        model, dev = self.model, self.dev
        wanted = wants_acceleration(dev, self.options.compute.accelerate)
        if wanted:
            accelerate(model)  # same function, faster CPU convolutions (docs/performance.md)
        elif self.options.compute.accelerate is False:
            decelerate(model)
        self.precision = Precision.of(dev, self.profile.amp, wanted or is_accelerated(model))
        self.np_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EED]))
        model.to(dev)
        if self.profile.channels_last:
            to_channels_last(model)
        self.optimizer = make_optimizer(model, self.profile)
        self.base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(dev.type) if self.precision.grad_scaler else None

    def resume_state(self) -> dict[str, Any]:
        """Optimiser, RNG and (float16 only) gradient-scaler states, as ``last.pt`` stores them."""
        out = {"optimizer": self.optimizer.state_dict(), "rng": _rng_state(self.np_rng, self.dev)}
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        return out

    def _result(self, seconds: float, resumed_from: int) -> FitResult:
        stop = self.stop or {"reason": "rounds", "step": self.step, "validations": len(self.history)}
        return FitResult(
            self.kept,
            self.history,
            self.step,
            seconds,
            resumed_from,
            self.config,
            self.precision.to_dict(),
            dict(stop),
        )

    # -- resume ---------------------------------------------------------------------------

    def _read_state(self) -> tuple[dict[str, Any], Path] | None:
        """The state to resume from and its file; None to start afresh."""
        if not self.last_path.exists():
            return None
        try:
            state = ckpt_io.read(self.last_path)
        except ckpt_io.CheckpointError as exc:
            return self._heal(str(exc))
        if state["meta"].get("config_fingerprint") != _config_fingerprint(self.config):
            raise ResumeMismatchError(
                f"{self.last_path} belongs to a run with a different configuration; "
                "use another output folder or delete it to start again"
            )
        ckpt_io.check_architecture(self.model, state["meta"], self.last_path)
        missing = [c["file"] for c in state["progress"]["topk"] if not (self.ckpt_dir / c["file"]).exists()]
        if missing:
            return self._heal(f"{self.last_path} lists checkpoints that are missing: {missing}")
        return state, self.last_path

    def _heal(self, reason: str) -> tuple[dict[str, Any], Path] | None:
        """``last.pt`` is unusable: fall back to the newest top-k file with a resumable state, else
        start from scratch (the unusable ``last.pt`` is removed); the choice is logged."""
        fingerprint = _config_fingerprint(self.config)
        for path in sorted(self.ckpt_dir.glob("top_step*.pt"), reverse=True):  # newest step first
            state = _resumable_topk(path, fingerprint)
            if state is not None:
                ckpt_io.check_architecture(self.model, state["meta"], path)
                log.warning(
                    "%s; falling back to the top-k checkpoint %s (step %d)",
                    reason,
                    path.name,
                    int(state["progress"]["step"]),
                )
                return state, path
        log.warning(
            "%s; no top-k checkpoint holds a resumable state, so the run restarts from scratch", reason
        )
        self.last_path.unlink(missing_ok=True)
        return None

    def restore(self) -> FitResult | None:
        """Resume from the saved state (a finished fit returns its result), or start afresh."""
        self._setup()
        found = self._read_state()
        if found is None:
            self._start()
            return None
        state, source = found
        prog = state["progress"]
        self.start_round, self.step = int(prog["round"]), int(prog["step"])
        self.elapsed_before = float(prog["seconds"])
        self.history = list(prog["history"])
        self.kept = [
            Checkpoint(self.ckpt_dir / c["file"], float(c["score"]), int(c["step"])) for c in prog["topk"]
        ]
        if self.plateau is not None:
            self.plateau = dict(prog["plateau"])
        self.stop = dict(prog["stop"]) if prog.get("stop") else None
        _remove_strays(self.ckpt_dir, self.kept)
        if prog.get("finished"):
            if source != self.last_path:
                _save_last(self.last_path, self.model, {}, prog, self.config)
            log.info("fit already finished in %s (step %d); nothing to do", self.ckpt_dir, self.step)
            ckpt_io.load_weights(self.model, self.kept[0].path)
            return self._result(self.elapsed_before, self.step)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"], self.np_rng, self.dev)
        log.info("resuming from %s at round %d, step %d", source, self.start_round, self.step)
        return None

    def _start(self) -> None:
        _remove_strays(self.ckpt_dir, [])
        init = self.options.init_weights
        if init is not None:
            meta = ckpt_io.load_weights(self.model, Path(init))
            log.info("initialised from %s (%s)", init, ckpt_io.describe(meta))
        torch.manual_seed(self.seed)
        p = self.profile
        length = f"{p.rounds} rounds x {self.steps_per_round} steps"
        if p.converges:
            first = self._at(p.validate_from)
            length = f"{p.max_steps} steps, validation every {p.validate_every} from step {first}"
        if p.plateau:
            length += (
                f", stop after {p.patience} without an improvement > {p.min_delta} once {p.min_steps} done"
            )
        length += ", " + describe_schedule(
            p.schedule, self.total_steps, self.warmup_steps, self.cooldown_steps
        )
        log.info(
            "fit %s: task %s, %d training / %d validation cases, %s, batch %d, "
            "crop %s, profile %s, optimizer %s lr %g, device %s, precision %s%s",
            getattr(self.model, "registry_name", type(self.model).__name__),
            self.task.name,
            len(self.train_ids),
            len(self.val.case_ids),
            length,
            self.batch,
            self.crop,
            p.name,
            p.optimizer,
            p.lr,
            self.dev,
            self.precision.describe(),
            ", accelerated" if self.precision.accelerated else "",
        )

    # -- training -------------------------------------------------------------------------

    def train(self, on_validation: Callable[[int, float], None] | None) -> FitResult:
        """The remaining rounds, each followed by a validation, top-k update and ``last.pt``."""
        resumed_from = self.step
        t0 = time.perf_counter()
        bar = _Progress(
            self.options.compute.progress, self.total_steps, self.options.description, done=self.step
        )
        try:
            self.model.train()
            for rnd in range(self.start_round, self.profile.rounds):
                if self.stop is not None:
                    break
                losses = self._round(rnd, bar)
                elapsed = self.elapsed_before + time.perf_counter() - t0
                if not self._validates():
                    self._checkpoint_round(rnd, elapsed)
                    continue
                score = validate(
                    self.model,
                    self.task,
                    self.val,
                    self.profile.amp,
                    self.profile.eval_batch,
                    self.profile.channels_last,
                )
                elapsed = self.elapsed_before + time.perf_counter() - t0
                self._record(rnd, float(np.mean(losses)), score, elapsed)
                bar.update(0, score=f"{score:.4f}")
                if on_validation is not None:
                    on_validation(self.step, score)
        finally:
            bar.close()
        seconds = self.elapsed_before + time.perf_counter() - t0
        if not self.kept:
            raise RuntimeError("no checkpoint was kept (every validation score was NaN)")
        for c in self.kept:  # the resumable states are not needed once finished
            ckpt_io.drop_resume(c.path)
        log.info(
            "fit done (%s): %d steps in %.1f s; kept %d checkpoints, best %s %.4f at step %d",
            (self.stop or {}).get("reason", "rounds"),
            self.step,
            seconds,
            len(self.kept),
            self.task.score_name,
            self.kept[0].score,
            self.kept[0].step,
        )
        ckpt_io.load_weights(self.model, self.kept[0].path)
        return self._result(seconds, resumed_from)

    def _round(self, rnd: int, bar: _Progress) -> list[float]:
        """One round of optimiser steps; returns the losses."""
        p, task = self.profile, self.task
        steps = self.steps_per_round
        if p.converges:  # the last round may be cut short by max_steps
            steps = min(steps, int(p.max_steps) - self.step)
        schedule = round_schedule(len(self.train_ids), steps, self.batch, p.repeats, self.np_rng)
        losses = []
        for idx in schedule:
            x, y = make_batch(
                self.train_src,
                [self.train_ids[i] for i in idx],
                task.target,
                self.crop,
                task.binary_target,
                self.np_rng,
            )
            x, y = x.to(self.dev, non_blocking=True), y.to(self.dev, non_blocking=True)
            if p.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            value = self._step(x, y, rnd)
            losses.append(value)
            bar.update(1, loss=f"{value:.4f}")
        return losses

    def _set_lr(self) -> None:
        """The schedule's learning rate for the coming step (a function of the step: exact on resume)."""
        p = self.profile
        factor = lr_factor(p.schedule, self.step, self.total_steps, self.warmup_steps, self.cooldown_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def _step(self, x: torch.Tensor, y: torch.Tensor, rnd: int) -> float:
        """One optimiser step (loss-scaled under float16); a non-finite loss stops the fit."""
        self.optimizer.zero_grad(set_to_none=True)
        self._set_lr()
        with autocast(self.dev, self.profile.amp):
            logits = self.model(x)
        loss = self.task.loss(logits.float(), y)
        value = float(loss.detach())
        if not math.isfinite(value):
            good = self.last_path if self.last_path.exists() else None
            raise NonFiniteLossError(
                f"training loss became {value} at step {self.step + 1} (round {rnd + 1}); stopped. "
                + (f"The last good state is {good}." if good else "No checkpoint was written yet.")
            )
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return value

    def _at(self, fraction: float) -> int:
        """The step at ``fraction`` of a step budget (rounded up)."""
        return math.ceil(float(fraction) * int(self.profile.max_steps) - 1e-9)

    def _validates(self) -> bool:
        """Whether the round just ended is followed by a validation: always in round-based profiles; in a
        step budget from ``validate_from`` on, at the end, and at the first round end past ``fail_at``."""
        p, step = self.profile, self.step
        if not p.converges or step >= int(p.max_steps) or step >= self._at(p.validate_from):
            return True
        if p.fail_at is None:
            return False
        fail = self._at(p.fail_at)
        return step >= fail > step - int(p.validate_every)

    def _selectable(self) -> bool:
        """Whether this validation's checkpoint may enter the top-k (from ``select_from`` on)."""
        p = self.profile
        return not p.converges or self.step >= min(self._at(p.select_from), int(p.max_steps))

    def _checkpoint_round(self, rnd: int, elapsed: float) -> None:
        """A round without a validation: ``last.pt`` every :data:`CHECKPOINT_EVERY_ROUNDS` rounds."""
        if (rnd + 1) % CHECKPOINT_EVERY_ROUNDS:
            return
        record = _progress_record(
            self.step, rnd + 1, self.kept, self.history, False, elapsed, self.plateau, None
        )
        _save_last(self.last_path, self.model, self.resume_state(), record, self.config)

    def _record(self, rnd: int, mean_loss: float, score: float, elapsed: float) -> None:
        """After a validation: history, top-k (with a resumable state mid-run), ``last.pt``, log."""
        step, p = self.step, self.profile
        self.history.append({"round": rnd + 1, "step": step, "loss": mean_loss, "score": score})
        new_path = self.ckpt_dir / f"top_step{step:07d}.pt"
        self.stop = self._stop_after(rnd, score)
        evicted, entered = None, False
        if self._selectable():
            self.kept, evicted, entered = update_topk(self.kept, score, step, p.top_k, new_path)
        elif self.stop is not None and not self.kept:  # a failed fit keeps its last state for the record
            self.kept, evicted, entered = update_topk(self.kept, score, step, 1, new_path)
        finished = self.stop is not None
        record = _progress_record(
            step, rnd + 1, self.kept, self.history, finished, elapsed, self.plateau, self.stop
        )
        resume = self.resume_state()
        if entered:
            extra = (
                None
                if finished
                else {**resume, "progress": record, "config_fingerprint": _config_fingerprint(self.config)}
            )
            task = self.task
            ckpt_io.save_weights(
                self.model,
                new_path,
                resume=extra,
                score=score,
                step=step,
                task=task.name,
                target=task.target,
                score_name=task.score_name,
            )
        _save_last(self.last_path, self.model, resume, record, self.config)
        if evicted is not None:
            evicted.path.unlink(missing_ok=True)
        log.info(
            "round %d/%d step %d: loss %.4f, validation %s %.4f%s%s",
            rnd + 1,
            p.rounds,
            step,
            mean_loss,
            self.task.score_name,
            score,
            " (kept)" if entered else "",
            f"; stopped ({self.stop['reason']})" if self.stop else "",
        )

    def _stop_after(self, rnd: int, score: float) -> dict[str, Any] | None:
        """Whether the fit stops after this validation, and why (None: it goes on)."""
        p, step, n_val = self.profile, self.step, len(self.history)
        if not p.converges:
            return {"reason": "rounds", "step": step, "validations": n_val} if rnd + 1 == p.rounds else None
        reason = None
        if self.plateau is not None:
            self.plateau = plateau_update(self.plateau, score, float(p.min_delta))
            if step >= int(p.min_steps) and self.plateau["stale"] >= int(p.patience):
                reason = "plateau"
        scores = [h["score"] for h in self.history if not math.isnan(h["score"])]
        never_learnt = not any(v > 0 for v in scores)
        if reason is None and p.fail_at is not None and step >= self._at(p.fail_at) and never_learnt:
            reason = "failed"
        if reason is None and step >= int(p.max_steps):
            reason = "max_steps"
        if reason is None:
            return None
        out = {"reason": reason, "step": step, "validations": n_val}
        if self.plateau is not None:
            return {**out, "best_score": self.plateau["best"], "stale": self.plateau["stale"]}
        return {**out, "best_score": max(scores) if scores else None}
