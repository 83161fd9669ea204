"""``bench3d2d tune``: Optuna search of one model's hyper-parameters on validation Dice."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune`` sub-command."""
    p = subparsers.add_parser(
        "tune",
        help="tune a model's hyper-parameters with Optuna (many workers may share one study)",
        description="Search the model's registry search space, maximising validation Dice, with median "
        "pruning. Start the same command on several machines with one --storage to tune in parallel.",
    )
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--dataset", default="ga", help="benchmark group (ga, rpd), dataset name or manifest path")
    p.add_argument("--fraction", default="100", help="label fraction in percent")
    p.add_argument("--trials", type=int, required=True, help="total trials of the study, over all workers")
    p.add_argument(
        "--storage",
        default=None,
        help="sqlite:///FILE, journal:FILE or postgresql://USER@HOST/DB (default: RESULTS/tuning.db)",
    )
    p.add_argument("--profile", default="quick", help="training profile: quick or paper")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs and of the TPE sampler")
    p.add_argument("--pretrain", default="none", choices=["none", "slo", "faf"],
                   help="fine-tune from SSL weights reconstructing this modality")
    p.add_argument("--out", default="results", help="results folder")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each trial's checkpoints")
    p.add_argument("--json", action="store_true", help="print the study summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Tune, then print the best trial."""
    import optuna

    from bench3d2d.harness.tune import TuneSettings, tune

    settings = TuneSettings(
        model=args.model,
        dataset=args.dataset,
        fraction=args.fraction,
        trials=args.trials,
        profile=args.profile,
        seed=args.seed,
        pretrain=args.pretrain,
        keep_checkpoints=args.keep_checkpoints,
    )
    study = tune(settings, storage=args.storage, results=args.out)
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in optuna.trial.TrialState}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = {
        "study": study.study_name,
        "trials": len(trials),
        "states": {k: v for k, v in states.items() if v},
        "best_value": study.best_value if complete else None,
        "best_params": study.best_params if complete else None,
        "best_trial": study.best_trial.number if complete else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"study {summary['study']}: {summary['trials']} trials {summary['states']}")
        if complete:
            print(f"best validation Dice {summary['best_value']:.4f} (trial {summary['best_trial']}): "
                  f"{json.dumps(summary['best_params'])}")  # fmt: skip
    return 0 if complete else 1
