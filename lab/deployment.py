"""How one lab is deployed: on which substrate, with which containers, at which VRRP pace.

The model says what the lab is; a `Deployment` says how this run of it is made, and is handed
to rendering and to the lifecycle instead of being written back into the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from lab.model import Lab, Node, VrrpTiming
from lab.render import FORMS, Form

Driver = Literal["lxd", "netns"]
FORCE_FAST = "VXLAB_FORCE_FAST"  # set to 1: the fast profile even on emulated VMs


class ProfileRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class Prober:
    """The fast profile's uplink prober, one per tenant and family: a long-running ping whose
    lines a shell loop counts (no process per probe) into keepalived's track_file, which
    keepalived re-reads on change. keepalived 2.2.7 runs a vrrp_script about once a second
    whatever its interval says (0.05 gave 1.1-1.8 s outages), hence no vrrp_script."""

    interval_s: float  # between probes
    misses: int        # probes unanswered in a row -> the file says 1: FAULT
    replies: int       # probes answered in a row -> 0 again


PROBES_S = {"seed": 0.05, "fast": 0.01, "emulated": 0.2}  # the drills' probe interval


@dataclass(frozen=True)
class Deployment:
    form: Form          # what differs between the substrates' files (lab/render.py)
    driver: Driver      # the containers: LXD, or light (a namespace each)
    timing: VrrpTiming  # VRRP adverts and health checks: the seed's, or for emulated VMs
    probe_interval: float = 0.05  # the drills' probes (s)
    prober: Prober | None = None  # the fast profile's uplink prober (None: the seed's check scripts)

    @classmethod
    def of(cls, lab: Lab, form: Form | str, driver: Driver | None = None,
           emulated: bool = False) -> Deployment:
        """A deployment of `lab`: its own container driver unless one is given; on emulated
        VMs (no KVM) its `vrrp.emulated` timing, if it has one, and slower probes. The fast
        profile: 0.1 s adverts and the uplink prober, 10 ms probes; refused on emulated VMs
        (sub-second timers flap there) unless VXLAB_FORCE_FAST=1."""
        form = FORMS[form] if isinstance(form, str) else form
        driver = driver or lab.containers.driver
        if lab.vrrp.profile == "fast":
            if emulated and os.environ.get(FORCE_FAST) != "1":
                raise ProfileRefused(
                    "vrrp.profile fast is refused on emulated VMs (no KVM): sub-second VRRP timers "
                    f"flap under QEMU's emulation; use the seed profile, or set {FORCE_FAST}=1 to force it")
            fast = lab.vrrp.fast
            # constructed: the seed's advert_int is whole seconds, v3's centiseconds are the profile's
            timing = VrrpTiming.model_construct(advert_int=fast.advert_ms / 1000, track=lab.vrrp.track)
            return cls(form, driver, timing, PROBES_S["fast"],
                       Prober(fast.probe_ms / 1000, fast.misses, fast.replies))
        slow = lab.vrrp.emulated if emulated else None
        timing = slow or VrrpTiming(advert_int=lab.vrrp.advert_int, track=lab.vrrp.track)
        return cls(form, driver, timing, PROBES_S["emulated" if emulated else "seed"])

    @property
    def profile(self) -> str:
        return "fast" if self.prober else "seed"

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
