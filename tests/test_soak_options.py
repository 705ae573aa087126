"""`make soak`'s options, refused before anything starts."""

import os
import signal
import subprocess
import sys

import pytest


@pytest.mark.parametrize(("setup", "fault"), [("one-host", "worker SIGKIL"),
                                               ("sentinel", "Redis SIGKILL")])
def test_a_fault_the_setup_does_not_have_is_refused_at_start(setup, fault):
    """Else the fault thread finds nothing to pick, dies, and the soak runs fault-free."""
    soak = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.soak", "--setup", setup, "--only",
         "worker SIGTERM", fault], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # a soak started by mistake is ended with all it spawned
    try:
        stdout, stderr = soak.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(soak.pid, signal.SIGKILL)
        soak.communicate()
        pytest.fail("the soak started instead of refusing the fault")

    assert soak.returncode == 2
    assert f"no fault {fault!r} in setup {setup}" in stderr
    assert "soak:" not in stdout  # nothing started
