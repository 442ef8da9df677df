"""Tracking: run snapshots, git and environment state, MLflow runs (imports mlflow lazily)."""
