#!/usr/bin/env bash
# Usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#        tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args...]
# from a login node (srun asks for the allocation), or as a batch job:
#        sbatch -p PARTITION -N1 --ntasks=8 --gres=gpu:8 [--time=...] \
#            tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args...]
# GRES defaults to gpu:$GPUS_PER_NODE; set GRES= (empty) on a CPU-only cluster.
#
# Preemption and time limits (README, "Multi-GPU and Slurm"):
# * train.py always runs with --resume: it continues from the newest complete
#   checkpoint of the work dir (an empty work dir is a first start).
# * Slurm is asked for SIGUSR1 SIGNAL_LEAD seconds (default 300) before the time
#   limit (srun --signal; in a batch job the #SBATCH line below). On SIGUSR1, as on
#   SIGTERM (preemption, scancel) or SIGINT (Ctrl-C), every task finishes its
#   iteration, writes a checkpoint of it and exits with status 75.
# * After a stop on SIGUSR1 -- the time-limit warning, or `scancel --signal=USR1 JOBID`
#   to preempt a job by hand -- the training goes on: from a login node srun runs
#   again (a new job; at most REQUEUES times, default 20), in a batch job the job is
#   requeued (scontrol requeue; Slurm's MaxBatchRequeue applies). A stop on SIGTERM
#   or SIGINT ends the script with status 75: scancel means stop, and Slurm requeues
#   preempted batch jobs itself when its PreemptMode says so (they resume too).
# * The tasks say how they stopped in a file in the current directory (which rank 0
#   must see: the submit directory on a shared file system), removed at the end.
#SBATCH --signal=USR1@300
#SBATCH --requeue
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
SIGNAL_LEAD=${SIGNAL_LEAD:-300}
REQUEUES=${REQUEUES:-20}
STOPPED=75  # tools/train.py: stopped on a signal after a checkpoint, resumable
PY_ARGS=${@:4}

TOOLS=$(dirname "$0")
SIGNAL_ARG=--signal=USR1@${SIGNAL_LEAD}
if [ -n "${SLURM_JOB_ID}" ]; then
    SIGNAL_ARG=  # a batch job: its own --signal (#SBATCH line above) applies
    if [ ! -f "$TOOLS/train.py" ]; then  # sbatch runs a copy of this script
        TOOLS=$(dirname "$(scontrol show job "${SLURM_JOB_ID}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")
    fi
fi
export MMSEG_DIDA_STOP_FILE
MMSEG_DIDA_STOP_FILE=$(mktemp "$PWD/.slurm_train_stop.XXXXXX") || exit 1
trap 'rm -f "$MMSEG_DIDA_STOP_FILE"' EXIT

for (( run = 0; ; run++ )); do
    : > "$MMSEG_DIDA_STOP_FILE"
    PYTHONPATH="$TOOLS/..":$PYTHONPATH \
    srun -p "${PARTITION}" \
        --job-name="${JOB_NAME}" \
        ${GRES:+--gres=${GRES}} \
        --ntasks="${GPUS}" \
        --ntasks-per-node="${GPUS_PER_NODE}" \
        --cpus-per-task="${CPUS_PER_TASK}" \
        --kill-on-bad-exit=1 \
        ${SIGNAL_ARG} \
        ${SRUN_ARGS} \
        "$PYTHON" -u "$TOOLS/train.py" "${CONFIG}" --launcher="slurm" --resume \
        ${PY_ARGS}
    status=$?
    if [ "$status" != "$STOPPED" ] || ! grep -q '^stopped by SIGUSR1 ' "$MMSEG_DIDA_STOP_FILE"; then
        exit "$status"
    fi
    if [ -n "${SLURM_JOB_ID}" ]; then
        echo "slurm_train.sh: $(cat "$MMSEG_DIDA_STOP_FILE"); requeueing job ${SLURM_JOB_ID}"
        rm -f "$MMSEG_DIDA_STOP_FILE"
        scontrol requeue "${SLURM_JOB_ID}"
        exit "$STOPPED"
    fi
    if (( run >= REQUEUES )); then
        echo "slurm_train.sh: stopped $((run + 1)) times, REQUEUES=${REQUEUES} reached" >&2
        exit "$STOPPED"
    fi
    echo "slurm_train.sh: $(cat "$MMSEG_DIDA_STOP_FILE"); running it again ($((run + 1))/${REQUEUES})"
done
