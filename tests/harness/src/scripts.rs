//! The bench's scripts: a `command` fence that really powers a host off, and a hook that
//! logs what it was called with.

/// The test fence: "powers off" the peer namespace (kills every process in it, flushes its
/// addresses, takes its link down), `OFF_DELAY` seconds after it was asked. Logs every call
/// (and its environment, to `fence-env-$FAILOVER_NODE.txt`); reads its settings from
/// `fence-$FAILOVER_NODE.env` beside it.
pub const FENCE: &str = r#"#!/bin/sh
# Test fence: "powers off" the peer namespace. Logs every call.
. "$(dirname "$0")/fence-$FAILOVER_NODE.env"
echo "$1" >> "$LOG"
# Renamed into place: a concurrent call (the power-on after the off) never shows it empty.
f="$(dirname "$0")/fence-env-$FAILOVER_NODE.txt"; env > "$f.$$" && mv "$f.$$" "$f"
case "$1" in
  off)
    [ "$FAIL" = 1 ] && { echo "BMC unreachable (test)" >&2; exit 1; }
    sleep "$OFF_DELAY"
    ip netns pids "$NS" | xargs -r kill -9
    # Power is off once every process is gone, not when the signal is sent.
    while [ -n "$(ip netns pids "$NS")" ]; do sleep 0.005; done
    ip -n "$NS" link set eth0 down
    ip -n "$NS" addr flush dev eth0 scope global
    echo off > "$STATE" ;;
  on)
    [ "$FAIL" = 1 ] && exit 1
    ip -n "$NS" addr add $ADDR dev eth0
    ip -n "$NS" link set eth0 up
    echo on > "$STATE" ;;
  reboot)
    [ "$FAIL" = 1 ] && exit 1
    ip netns pids "$NS" | xargs -r kill -9
    while [ -n "$(ip netns pids "$NS")" ]; do sleep 0.005; done
    ip -n "$NS" addr flush dev eth0 scope global
    ip -n "$NS" addr add $ADDR dev eth0 ;;
  status) cat "$STATE" ;;
  *) exit 1 ;;
esac
"#;

/// The test hook: appends `HOOK ROLE EPOCH PEER REASON` to `hooks-$FAILOVER_NODE.log` (REASON
/// is `FAILOVER_REASON`, empty for on_primary and on_monitor) and writes
/// its environment to `hook-env-$FAILOVER_NODE.txt`; `on_fault` exits 3, so a failing hook
/// is seen too.
pub const HOOK: &str = r#"#!/bin/sh
echo "$FAILOVER_HOOK $ROLE $EPOCH $PEER ${FAILOVER_REASON:-}" >> "$(dirname "$0")/hooks-$FAILOVER_NODE.log"
f="$(dirname "$0")/hook-env-$FAILOVER_NODE.txt"; env > "$f.$$" && mv "$f.$$" "$f"
echo "hook $FAILOVER_HOOK ran"
[ "$FAILOVER_HOOK" = on_fault ] && exit 3
exit 0
"#;
