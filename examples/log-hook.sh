#!/bin/sh
# log-hook.sh - an example failover hook that only logs what happened; it changes nothing.
#
# failover runs hooks ([hooks] on_primary, on_monitor, on_fault) one at a time, stdin from
# /dev/null, killed after hooks.timeout (default 30s), with in the environment:
#   ROLE           the role when the hook was requested: primary, monitor, booting, conflict...
#   EPOCH          the epoch at that moment
#   PEER           node.peer_name
#   FAILOVER_NODE  node.name of this host
#   FAILOVER_HOOK  on_primary, on_monitor or on_fault
# Its stdout is logged at INFO and its stderr at WARN (target failover::hook). Exit 0 is a
# hook_ran event, anything else hook_failed. A hook never delays the role change.
#
# Replace it with the programs that start and stop your service (on_primary, on_monitor) and
# page someone (on_fault). Try it by hand: ROLE=primary EPOCH=1 PEER=b ./log-hook.sh
set -eu

msg="${FAILOVER_HOOK:-hook} on ${FAILOVER_NODE:-this host}: ROLE=${ROLE:-?} EPOCH=${EPOCH:-?} PEER=${PEER:-?}"
echo "$msg"
if command -v logger >/dev/null 2>&1; then
    logger -t failover-hook -- "$msg" || true
fi
