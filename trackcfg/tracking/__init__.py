"""Tracking: what a run records and where (below the application layer, beside `runner`).

Run snapshots with their manifest (`snapshot`, `manifest`, `confinement`), the git and
environment state (`gitstate`, `environment`), credential redaction (`redaction`),
MLflow runs, tags and params (`mlflow_run`: the one seam to MLflow's client), `sync`,
and the tracking agent (`agent`). Never imports `trackcfg.runner`: the application
layer, `trackcfg.session`, joins the two.
"""
