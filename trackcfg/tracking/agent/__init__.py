"""The tracking agent and what it works on: the child process doing a run's MLflow work.

- `client`: the training process's handle (spawn, requests, replies);
- `process`: the agent itself (``python -m trackcfg.tracking.agent``);
- `journal`: the metric journal the trainer writes and the agent delivers;
- `delivery`: journal -> store, exactly once;
- `uploads`: checkpoint uploads and the run's "latest complete checkpoint" pointer;
- `lease`: one trainer per run, in the store.

Nothing here imports torch or the runner; MLflow is imported inside the functions
that talk to the store.
"""

__all__: list[str] = []
