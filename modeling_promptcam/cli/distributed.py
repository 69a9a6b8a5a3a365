"""How a command's process leaves a data-parallel run (`promptcam train`, `promptcam explain --format parquet`): one
exit path, shared by the commands that can run under `accelerate launch` / `torchrun`."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from dataclasses import dataclass


@dataclass
class ProcessOutcome:
    """What a command's process exits with when it leaves a data-parallel run through [`distributed_exit`]; the body
    sets `exit_code` (0 unless it says otherwise)."""

    exit_code: int = 0


@contextlib.contextmanager
def distributed_exit():
    """The one way a `promptcam train` or `promptcam explain --format parquet` process leaves a data-parallel run
    (docs/training.md, "How a data-parallel run ends"). It is the process's end, so it is the command's job (a library
    caller may go on using the group). Yields a [`ProcessOutcome`] whose `exit_code` the body may set.

    - Success: [`close_process_group`] after a final barrier, then the process ends at once with the outcome's exit
      code (`os._exit`, after flushing its output and logs): everything it had to do is done, and the interpreter's
      teardown (joining gloo's and the autograd engine's threads, finalizers, C++ static destructors) is where a
      finished process could hang with no way for the launcher to tell.
    - Failure: [`close_process_group`] without the barrier (the peers may never get there), and the error goes on to
      the one error path (`error: ...`, exit 1); the launcher then stops the other processes.
    Outside a data-parallel run it changes nothing.
    """
    from ..training.trainer import close_process_group

    outcome = ProcessOutcome()
    try:
        yield outcome
    except BaseException as error:
        # the traceback's frames hold the Trainer (and through it the process group): let them go, keep the lines
        traceback.clear_frames(error.__traceback__)
        close_process_group(wait_for_peers=False)
        raise
    if close_process_group(wait_for_peers=True):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(outcome.exit_code)
