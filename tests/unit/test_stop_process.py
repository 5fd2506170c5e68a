"""``tests.helpers.stop_process``: how the connected suites stop the services they start."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.helpers import stop_process


def test_a_process_that_stops_on_sigterm_gives_its_signal() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(proc) == -signal.SIGTERM


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert stop_process(proc, grace_s=0.5) == -signal.SIGKILL
    proc.stdout.close()
