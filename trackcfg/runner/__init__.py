"""Registries' consumers: runners, hooks, checkpoints and exact resume (imports torch)."""
