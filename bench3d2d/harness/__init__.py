"""The harness: run specs and ids, plans, the results store, workers, executors, sweeps, tuning.

Public modules: ``sweep`` (plan and run a sweep), ``executors`` (in-process, subprocess, SLURM),
``tune`` (Optuna). Private machinery: ``_spec`` (run specs and ids), ``_plan`` (expanding a sweep),
``_store`` (the results folder), ``_runner`` (one item under its claim), ``_worker`` (one run in a worker).
"""
