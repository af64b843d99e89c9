"""How one lab is deployed: on which substrate, with which containers, at which VRRP pace.

The model says what the lab is; a `Deployment` says how this run of it is made, and is handed
to rendering and to the lifecycle instead of being written back into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lab.model import Lab, Node, VrrpTiming
from lab.render import FORMS, Form

Driver = Literal["lxd", "netns"]


@dataclass(frozen=True)
class Deployment:
    form: Form          # what differs between the substrates' files (lab/render.py)
    driver: Driver      # the containers: LXD, or light (a namespace each)
    timing: VrrpTiming  # VRRP adverts and health checks: the seed's, or for emulated VMs
    probe_interval: float = 0.05  # the drills' probes (s)

    @classmethod
    def of(cls, lab: Lab, form: Form | str, driver: Driver | None = None,
           emulated: bool = False) -> Deployment:
        """A deployment of `lab`: its own container driver unless one is given; on emulated
        VMs (no KVM) its `vrrp.emulated` timing, if it has one, and slower probes."""
        form = FORMS[form] if isinstance(form, str) else form
        slow = lab.vrrp.emulated if emulated else None
        timing = slow or VrrpTiming(advert_int=lab.vrrp.advert_int, track=lab.vrrp.track)
        return cls(form, driver or lab.containers.driver, timing, 0.2 if emulated else 0.05)

    @property
    def substrate(self) -> str:
        return self.form.substrate

    def light(self, node: Node) -> bool:
        """The node is a container that is only a namespace (shares the host's /etc)."""
        return self.form.state_dir is not None and node.is_container and self.driver == "netns"

    def root(self, lab: Lab, node: Node) -> str:
        """Where the node's paths live on the machine that holds them ("" if its own fs)."""
        if self.form.state_dir is None or (node.is_container and self.driver == "lxd"):
            return ""
        return f"{self.form.state_dir.format(lab=lab.name)}/{node.name}"

    def master_down(self, lab: Lab, tenant: str) -> float:
        """VRRPv3's Master_Down_Interval for a backup of this priority (RFC 5798)."""
        adv = self.timing.advert_int
        return 3 * adv + (256 - lab.tenants[tenant].vrrp_priority) / 256 * adv
