"""Talking to LXD's API where it is slow: an emulated VM's LXD can be minutes late."""

from __future__ import annotations

import pytest
import requests

from lab.containers.lxd import _await


def test_a_late_lxd_operation_is_awaited_again_not_run_again():
    class Wait:
        def __init__(self, late: int) -> None:
            self.late, self.asked = late, 0

        def get(self, params, timeout):
            self.asked += 1
            if self.asked <= self.late:
                raise requests.exceptions.ReadTimeout("busy LXD")
            return type("Reply", (), {"json": lambda _: {"metadata": {"status": "Success"}}})()

    class Operation:
        def __init__(self, late: int) -> None:
            self.wait = Wait(late)

    op = Operation(late=2)
    assert _await(op, timeout=1) == {"status": "Success"} and op.wait.asked == 3
    with pytest.raises(requests.exceptions.ReadTimeout):
        _await(Operation(late=3), timeout=1)
