"""The child a GPU worker starts for a fine-tune:

    python -m training.trainer.launcher WORKER_PID ACCELERATE_LAUNCH_ARGUMENTS...

runs `accelerate launch` in this process (by runpy), which starts the trainer processes. The worker starts it
as the leader of its own process group, with PR_SET_PDEATHSIG set (before exec) to send it SIGUSR1 when the
worker dies; the handler then ends the whole group, trainer processes included, which the kernel would
otherwise leave running as orphans (the death signal is not inherited by grandchildren). SIGTERM to the group
is meant for the trainer processes: the launcher ignores it and exits when they do.

Only the standard library here, no Django: the worker's settings stay in the worker.
"""

import os
import runpy
import signal
import sys
import time

KILL_AFTER_TERM_S = 5


def stop_group(*_: object) -> None:
    """The whole process group, this launcher included: SIGTERM, then SIGKILL what is left."""
    os.killpg(0, signal.SIGTERM)
    time.sleep(KILL_AFTER_TERM_S)
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> None:
    # A handler that does nothing, not SIG_IGN: an ignored signal stays ignored across exec, and the trainer
    # processes must still stop on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGUSR1, stop_group)
    if os.getppid() != int(argv[0]):  # the worker died before the death signal was set: none will come
        stop_group()
    sys.argv = ["accelerate-launch", *argv[1:]]
    runpy.run_module("accelerate.commands.launch", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
