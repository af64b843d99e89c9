"""Ctrl-C during `invoke up`: it stops within about a second, says what it left, and `invoke
down` removes all of it. Runs as root; the lab is named `vxstop`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import light_lab_file, needs_root

from lab import model
from lab.embedded import EmbeddedLab

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq"), pytest.mark.e2e]
ROOT = Path(__file__).resolve().parent.parent.parent


def test_ctrl_c_stops_up_at_once_and_down_removes_what_it_left(tmp_path_factory):
    lab_file = light_lab_file(tmp_path_factory, "vxstop")
    elab = EmbeddedLab(model.load(lab_file))
    elab.down()
    # Ctrl-C's SIGINT as a terminal delivers it: a test run started in the background inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt.
    p = subprocess.Popen([sys.executable, "-m", "invoke", "up", "--lab", str(lab_file)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # into the provisioning: the namespaces exist, the nodes are being set up side by side
        for line in p.stdout:
            if "the router | each tenant" in line:
                break
        time.sleep(0.5)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
        took = time.monotonic() - sent
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    try:
        assert rc == 130, err
        assert took < 2.0, f"up took {took:.1f} s to stop"
        assert "interrupted: what lab vxstop has made so far stays" in err and "`invoke down`" in err
        assert elab.exists()
        removed = elab.down()
        assert removed and not elab.exists()
        assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
                    .stdout.split() if n.startswith("vxstop-")]
    finally:
        elab.down()  # whatever failed, the next tests do not find this lab
