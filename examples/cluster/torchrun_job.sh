#!/usr/bin/env bash
# One tracked trackcfg job under torchrun: one MLflow run for all its ranks, continued
# (same run, no run id typed) when torchrun restarts it after a worker or node dies.
#
#   examples/cluster/torchrun_job.sh CONFIG [NPROC] [JOB_ID]
#
# On several nodes run it on every node with the same JOB_ID and RDZV_ENDPOINT
# (host:port of one of them) and NNODES set; a replacement node started with the
# same command rejoins the job.
set -euo pipefail
CONFIG=${1:?usage: torchrun_job.sh CONFIG [NPROC] [JOB_ID]}
NPROC=${2:-2}
# The job key: a restarted job finds its MLflow run by it (tag trackcfg.job_key).
# Keep it unique per job; torchrun's default rdzv id `none` names no job.
JOB_ID=${3:-${SLURM_JOB_ID:-trackcfg-$(date +%Y%m%d%H%M%S)}}
NNODES=${NNODES:-1}
RDZV_ENDPOINT=${RDZV_ENDPOINT:-127.0.0.1:29400}

# torch 2.13: without this a replacement node hangs at the c10d rendezvous.
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
# CPU (gloo) jobs: one intra-op thread per rank; a GPU job uses NCCL by default
# (or the config's dist_params=dict(backend=...)).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

exec torchrun \
  --nnodes="$NNODES" \
  --nproc-per-node="$NPROC" \
  --rdzv-backend=c10d \
  --rdzv-endpoint="$RDZV_ENDPOINT" \
  --rdzv-id="$JOB_ID" \
  --max-restarts=3 \
  -m trackcfg run "$CONFIG"
