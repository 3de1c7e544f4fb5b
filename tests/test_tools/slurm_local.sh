#!/usr/bin/env bash
# A real Slurm test on one machine (root, Debian/Ubuntu): install slurm-wlm and munge
# if missing, start munged, slurmctld and slurmd as a one-node cluster on this host
# with 2 CPUs (configuration, state and logs in a temporary folder; /etc/slurm is not
# touched), train 6 iterations with tools/slurm_train.sh and 2 tasks (gloo), preempted
# after iteration 2 by `scancel --signal=USR1` (the tasks stop with a checkpoint, the
# script runs the job again, which resumes), the same as a batch job (sbatch; the job
# is requeued and resumes), the same uninterrupted with
# tools/dist_train.sh and 2 processes, and check that the two runs end with identical
# checkpoints (weights, optimiser, schedulers, random states). The daemons this script
# started are stopped at the end.
#
#   bash tests/test_tools/slurm_local.sh        # from the repository root; ~3-5 min
#
# Environment: PYTHON (default .venv/bin/python), KEEP_TMP=1 keeps the temporary folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
export OMP_NUM_THREADS=1
# gloo on the CPU also where a GPU is visible: the two runs are compared bit for bit
export CUDA_VISIBLE_DEVICES=
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)
log() { echo "[slurm-test $(( $(date +%s) - START ))s] $*"; }

if [ "$(id -u)" != 0 ]; then echo "error: run as root (starts munged/slurmctld/slurmd)" >&2; exit 2; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

TMP=$(mktemp -d /tmp/mmseg_dida_slurm.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT

# munge: a key if there is none, and a daemon if none answers
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged --foreground > "$TMP/munged.out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
fi
munge -n | unmunge | grep -q Success
log "munge works"

HOST=$(hostname -s)
mkdir -p "$TMP/state" "$TMP/spool"
export SLURM_CONF=$TMP/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=mmsegdida
SlurmctldHost=$HOST
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
NodeName=$HOST CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -f "$SLURM_CONF" > "$TMP/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" > "$TMP/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.5
done
sinfo -h -o %t | grep -q idle || { echo "error: the node did not become idle"; cat "$TMP"/*.log; exit 1; }
log "one-node cluster up: $(sinfo -h -o '%P %D %t %c')"

# the tiny benchmark and 6 iterations of DAFormer + DiDA, one checkpoint at the end
"$PYTHON" -c "from mmseg_dida.datasets.procedural import generate_benchmark as g; \
g('$TMP/data/procedural', seed=0, size=(128, 64), counts=dict(train=8, val=4))"
CONFIG=$REPO/configs/dida/daformer_mit_tiny_procedural_dida.py
ITERS=6
OPTS="model.data_preprocessor.size=(64,128) train_cfg.max_iters=$ITERS train_cfg.val_interval=3
default_hooks.checkpoint.interval=$ITERS default_hooks.logger.interval=1
default_hooks.visualization.draw=False"
for dl in train_dataloader val_dataloader val_cfg.extra.source.dataloader; do
  OPTS="$OPTS $dl.num_workers=0 $dl.persistent_workers=False"
done
cd "$TMP"
log "tools/slurm_train.sh, 2 tasks, preempted by scancel --signal=USR1 after iteration 2"
GPUS=2 GPUS_PER_NODE=2 CPUS_PER_TASK=1 GRES= PYTHON=$PYTHON MASTER_PORT=29731 \
  bash "$REPO/tools/slurm_train.sh" debug mmseg_dida_test "$CONFIG" \
  --work-dir "$TMP/slurm" --cfg-options $OPTS > "$TMP/slurm.log" 2>&1 &
SCRIPT=$!
for _ in $(seq 2400); do
  grep -q "Iter(train) \[2/$ITERS\]" "$TMP/slurm.log" && break
  kill -0 "$SCRIPT" 2>/dev/null || break
  sleep 0.5
done
JOB=$(squeue -h -n mmseg_dida_test -o %i | head -1)
[ -n "$JOB" ] || { echo "error: no job to preempt"; tail -50 "$TMP/slurm.log"; exit 1; }
scancel --signal=USR1 "$JOB"
log "sent SIGUSR1 to job $JOB"
wait "$SCRIPT" || { echo "error: slurm_train.sh failed"; tail -80 "$TMP/slurm.log"; exit 1; }
grep -q "Distributed training: True" "$TMP/slurm.log"
grep "stopped by SIGUSR1 after iteration" "$TMP/slurm.log" | tail -1
grep -q "running it again (1/" "$TMP/slurm.log"
grep -q -- "--resume: resuming from $TMP/slurm/iter_" "$TMP/slurm.log"
log "sbatch tools/slurm_train.sh, 2 tasks, preempted by scancel --signal=USR1 after iteration 2"
: > "$TMP/batch.log"
JOB=$(GPUS=2 GPUS_PER_NODE=2 CPUS_PER_TASK=1 GRES= PYTHON=$PYTHON MASTER_PORT=29733 \
  sbatch --parsable -p debug -N1 --ntasks=2 --cpus-per-task=1 --job-name=mmseg_dida_batch \
  --output="$TMP/batch.log" --open-mode=append \
  "$REPO/tools/slurm_train.sh" debug mmseg_dida_batch "$CONFIG" \
  --work-dir "$TMP/batch" --cfg-options $OPTS)
job_state() { scontrol show job "$JOB" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
for _ in $(seq 2400); do
  grep -q "Iter(train) \[2/$ITERS\]" "$TMP/batch.log" && break
  case "$(job_state)" in COMPLETED|FAILED|CANCELLED|TIMEOUT) break;; esac
  sleep 0.5
done
scancel --signal=USR1 "$JOB"
log "sent SIGUSR1 to batch job $JOB"
for _ in $(seq 3600); do
  case "$(job_state)" in COMPLETED|FAILED|CANCELLED|TIMEOUT) break;; esac
  sleep 1
done
scontrol show job "$JOB" | grep -o 'JobState=[A-Z_]* .*\|Restarts=[0-9]*' | head -2
[ "$(job_state)" = COMPLETED ] || { echo "error: batch job $JOB ended $(job_state)"; tail -80 "$TMP/batch.log"; exit 1; }
grep "stopped by SIGUSR1 after iteration" "$TMP/batch.log" | tail -1
grep -q "requeueing job $JOB" "$TMP/batch.log"
grep -q -- "--resume: resuming from $TMP/batch/iter_" "$TMP/batch.log"
log "tools/dist_train.sh, 2 processes, uninterrupted"
PYTHON=$PYTHON PORT=29732 bash "$REPO/tools/dist_train.sh" "$CONFIG" 2 \
  --work-dir "$TMP/dist" --cfg-options $OPTS > "$TMP/dist.log" 2>&1 \
  || { tail -50 "$TMP/dist.log"; exit 1; }
"$PYTHON" - "$TMP/dist/iter_$ITERS.pth" "$TMP/slurm/iter_$ITERS.pth" \
  "$TMP/batch/iter_$ITERS.pth" <<'EOF'
import sys

import torch

from tests.helpers.reliability import checkpoint_diff  # the PYTHONPATH above

for name, path in zip(('login-node', 'batch'), sys.argv[2:4]):
    diff = checkpoint_diff(path, sys.argv[1])
    print(f'preempted {name} slurm run vs uninterrupted dist_train run, max abs '
          f'difference: {diff}')
    assert diff and all(v == 0 for v in diff.values()), diff
    assert len(torch.load(path, map_location='cpu', weights_only=False)
               ['resume_state']) == 2
print('slurm run == dist_train run')
EOF
log "passed"
