"""Evaluation: per-case metrics (``metrics``) and the leaderboard's statistics (``statistics``)."""
