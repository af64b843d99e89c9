#!/bin/bash
# vxlab fix: keepalived forks the seed's notify script once per transition, and under load
# those can finish out of order (seen: the status file said MASTER after the BACKUP that
# followed). keepalived writes its transitions to this FIFO ($1) in order, as lines
# `GROUP|INSTANCE "name" STATE priority`; the sync group's go to the seed's script, one at a time.
while read -r kind name state priority; do
        if [ "$kind" = GROUP ]; then
                /usr/local/bin/keepalived_notify.sh "$kind" "${name//\"/}" "$state" "$priority"
        fi
done < "$1"
