#!/bin/bash

echo "$1 $2 has transitioned to the $3 state with a priority of $4" > /var/run/keepalived_status
# vxlab: and a timestamped history, for the failover drills' timelines
echo "$(date +%s.%N) $1 $2 $3 $4" >> /var/run/keepalived_transitions
