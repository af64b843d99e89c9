"""Loop devices are found by their backing file's device and inode, never by a name alone."""

from __future__ import annotations

import json

from lab.host.loops import devices_on

LISTING = json.dumps({"loopdevices": [
    {"name": "/dev/loop1", "back-ino": 59, "back-maj:min": "     254:0  "},  # ours (padded by losetup)
    {"name": "/dev/loop0", "back-ino": 59, "back-maj:min": "0:82"},  # same inode, another file system
    {"name": "/dev/loop2", "back-ino": 60, "back-maj:min": "254:0"},  # same file system, another file
    {"name": "/dev/loop3", "back-ino": 59, "back-maj:min": "254:0"},  # a second loop on our file
    {"name": "/dev/loop4", "back-ino": None, "back-maj:min": None},  # detached, not yet freed
]})


def test_devices_on_match_device_and_inode():
    assert devices_on(LISTING, 254, 0, 59) == ["/dev/loop1", "/dev/loop3"]


def test_devices_on_another_file():
    assert devices_on(LISTING, 254, 0, 61) == []
    assert devices_on(LISTING, 254, 1, 59) == []


def test_no_loop_devices_at_all():
    assert devices_on("", 254, 0, 59) == []  # losetup prints nothing, not an empty list
    assert devices_on(json.dumps({"loopdevices": []}), 254, 0, 59) == []
