import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import model
from lab.model import overrides


@pytest.fixture(scope="session")
def default_data() -> dict:
    return yaml.safe_load(model.DEFAULT_LAB.read_text())


@pytest.fixture
def lab_data(default_data) -> dict:
    """A private copy of the default lab's data, to change and dump."""
    return copy.deepcopy(default_data)


def needs_root(*tools: str):
    """For tests that need root and real tools: they skip on a developer's laptop without
    them, never in CI (CI=true), where a missing tool must fail loudly instead."""
    missing = [t for t in tools if not shutil.which(t)]
    return pytest.mark.skipif(not os.environ.get("CI") and (os.geteuid() != 0 or bool(missing)),
                              reason=f"needs root and {', '.join(tools) or 'nothing else'}"
                                     f"{' (missing: ' + ', '.join(missing) + ')' if missing else ''}")


def light_lab_file(tmp_path_factory, name: str, *sets: str) -> Path:
    """A copy of the default lab under another name, with light containers and any changes
    written as --set takes them (`vrrp.profile=fast`): e2e tests get their own lab and never
    touch a user's `vxlab`."""
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"] = name
    data["containers"]["driver"] = "netns"
    data, _ = overrides.apply(data, sets)
    f = tmp_path_factory.mktemp("lab") / "lab.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def running_lab(lab_file):
    """Bring the lab up from nothing; yield it; take it down (a fixture's body)."""
    from lab.embedded import EmbeddedLab

    lab = EmbeddedLab(model.load(lab_file))
    lab.down()
    lab.up(timeout=120)
    yield lab
    lab.down()


def mh_footprint() -> dict[str, list[str]]:
    """The network namespaces and links named mh* on this machine: what the several-hosts
    tests make, and must leave as they found it."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout

    links = (ln.split(": ")[1].split("@")[0] for ln in out("ip", "-o", "link").splitlines())
    return {"netns": sorted(n for n in out("ip", "netns", "list").split() if n.startswith("mh")),
            "links": sorted(n for n in links if n.startswith("mh"))}
