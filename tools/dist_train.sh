#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args...]
# Environment (mmseg conventions): NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON.
# Without CUDA the processes train on CPU through gloo.
# torchrun through tools/dist_launch.py: SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 sent to
# this script's process stop every rank after the current iteration with a checkpoint
# of it, and the script exits with status 75 (resume with --resume).
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
exec "$PYTHON" "$(dirname "$0")/dist_launch.py" \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
