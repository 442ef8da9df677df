"""``python -m trackcfg.tracking.agent``: the tracking agent process (see `process`)."""

import os
import sys

from trackcfg.tracking.agent.process import main

status = main()
# Everything is stored and every thread has stopped; skip the interpreter's teardown
# of MLflow's and SQLAlchemy's modules (a tenth of a second the trainer would
# otherwise wait for).
sys.stderr.flush()
os._exit(status)
