import copy
import os
import shutil

import pytest
import yaml

from lab import model


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
