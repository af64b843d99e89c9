"""lab.host.process: finding processes by their environment, by pid only."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from lab.host import process


def test_processes_are_found_by_an_environment_entry_until_they_end():
    tag = uuid.uuid4().hex
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env={**os.environ, "VXLAB_TEST_TAG": tag})
    try:
        assert process.with_env("VXLAB_TEST_TAG", tag) == [child.pid]
        assert process.environ(child.pid)["VXLAB_TEST_TAG"] == tag
        assert os.getpid() not in process.where(lambda p: True)
    finally:
        assert process.terminate([child.pid]) == []
        child.wait()
    assert process.with_env("VXLAB_TEST_TAG", tag) == [] and process.environ(child.pid) == {}
