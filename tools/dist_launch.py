"""torchrun for ``tools/dist_train.sh``, with the graceful stop of ``tools/train.py``.

torchrun starts each rank in a session of its own, turns SIGTERM and SIGINT into a
failure of its own (a traceback, status 1, the ranks killed after 30 s) and dies on
SIGUSR1. This launcher passes SIGTERM, SIGINT and SIGUSR1 on to the ranks instead,
which stop after the current iteration with a checkpoint of it (``GracefulStopHook``),
and exits with their status 75 when they stopped that way (:func:`stopped`). Anything
else is torchrun's: same arguments, same report of a failure.

    python tools/dist_launch.py --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch
"""
import os
import signal
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# GracefulStopHook's STOP_EXIT_STATUS (not imported: importing mmseg_dida takes seconds
# and is not needed here; tests/test_tools/test_graceful_stop.py checks they agree)
STOP_EXIT_STATUS = 75


def children(pid: int):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:  # ended meanwhile
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _forward(signum, frame) -> None:
    for pid in children(os.getpid()):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stopped(failures) -> bool:
    """Did the ranks stop on a signal (torchrun's failures: rank -> ProcessFailure)?
    The first rank to exit did with status 75, and every other rank too, or was ended
    by torchrun, which signals the others as soon as one has exited: a rank leaves
    only after all have written the checkpoint (tools/train.py waits at a barrier)."""
    first = min(failures.values(), key=lambda f: f.timestamp)
    return first.exitcode == STOP_EXIT_STATUS and all(
        f.exitcode in (STOP_EXIT_STATUS, -signal.SIGTERM, -signal.SIGKILL)
        for f in failures.values())


def main(argv=None) -> int:
    args = parse_args(argv)
    args.signals_to_handle = 'SIGHUP,SIGQUIT'  # the others are passed on, see above
    for num in FORWARDED:
        signal.signal(num, _forward)
    try:
        run(args)
    except ChildFailedError as e:
        if stopped(e.failures):
            return STOP_EXIT_STATUS  # rank 0 printed the stop line
        raise
    return 0


if __name__ == '__main__':
    sys.exit(main())
