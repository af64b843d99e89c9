"""The lab as data: lab.yaml loaded into an immutable, validated model.

Loading is the only door into the rest of vxlab: everything downstream (templates, recipes,
checks, drills, the Vagrantfile) reads a `Lab`. Bad input is refused here, before anything
on any host is touched, with the file, the field path and the reason.

types.py is what a lab is, rules.py what a valid one obeys, load.py how lab.yaml becomes one.
"""

from lab.model.load import DEFAULT_LAB, LabError, load, parse
from lab.model.types import Lab, Node, VrrpTiming

__all__ = ["DEFAULT_LAB", "Lab", "LabError", "Node", "VrrpTiming", "load", "parse"]
