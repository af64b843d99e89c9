#!/bin/bash
# vxlab fix: keepalived forks the seed's notify script once per transition, and under load
# those can finish out of order (seen: the status file said MASTER after the BACKUP that
# followed). keepalived writes its transitions to this FIFO ($1) in order, as lines
# `GROUP|INSTANCE "name" STATE priority`; the sync group's go to the seed's script, one at a time.
while read -r kind name state priority; do
        if [ "$kind" = GROUP ]; then
                /usr/local/bin/keepalived_notify.sh "$kind" "${name//\"/}" "$state" "$priority"
                # vxlab: the first RA as soon as the VIPs are ours: radvd (AdvRASrcAddress) would
                # wait a second after the VIP appears, and a reload sends one at once
                if [ "$state" = MASTER ]; then
                        kill -HUP "$(cat /run/radvd.pid 2>/dev/null)" 2>/dev/null || true
                fi
        fi
done < "$1"
