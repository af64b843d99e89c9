#!/bin/bash
# vxlab: run once keepalived has exited, whatever the cause. A keepalived that is killed
# cannot remove its VIPs, which would then stay on VLAN 7 beside the other tenant's.
ip addr del 192.0.2.222/24 dev sw-vlan7 2>/dev/null
ip addr del fe80:7::de/64 dev sw-vlan7 2>/dev/null
exit 0
