#!/bin/sh
# fence-peer.sh - a fence command for failover (boot.method = "command") that powers the peer
# through its IPMI BMC with ipmitool.
#
# The contract (failover-user/src/fence/command.rs, docs/configuration.md "[boot]"):
#
#   fence-peer.sh off|on|reboot|status
#
#   The daemon passes the peer in the environment:
#     FAILOVER_PEER          node.peer_name, e.g. "b"
#     FAILOVER_PEER_ADDRESS  node.peer, e.g. "192.0.2.2"
#     FAILOVER_NODE          node.name of the host running the command
#     FAILOVER_ACTION        the action word again
#   stdin is /dev/null; stdout is logged at INFO, stderr at WARN (target failover::boot).
#
#   Exit 0 means the action was done. "off" is not a fence by itself: the daemon then runs
#   "status" every 50 ms, and only a "status" that reports off lets it take the primary
#   address. "status" prints exactly "off" (exit 0) when the peer is off, "on" (exit 0) when it
#   is on, and exits 1 when it cannot tell; anything but "off" counts as not off. "on" and
#   "reboot" are taken as done on exit 0, without a status check.
#   boot.timeout (default 60s) bounds each action; when it runs out the daemon kills this
#   process (SIGKILL, this process only), so the last ipmitool call of each action is exec'd.
#
# Settings: a small file per peer, sourced by this script, by default
# /etc/failover/fence-$FAILOVER_PEER.env (FENCE_ENV=/path overrides it). Root-owned, mode 0600:
#
#   BMC=10.0.10.2                              # the peer's BMC (not the peer itself)
#   BMC_USER=failover                          # an IPMI user allowed to change chassis power
#   BMC_PASSWORD_FILE=/etc/failover/bmc-b.pw   # the password on its first line, mode 0600
#   # BMC_OPTS="-C 17"                         # optional extra ipmitool options (word-split)
#
# The password is only ever read by ipmitool (-f); this script never reads or prints it.
# Needs ipmitool (Debian: apt-get install ipmitool) and a BMC with IPMI over LAN enabled.
#
# Test it by hand on the other host before relying on it:
#
#   FAILOVER_PEER=b ./fence-peer.sh status; echo "exit $?"   # prints on or off
#   FAILOVER_PEER=b FENCE_ENV=./fence-b.env ./fence-peer.sh status
#
# "off" really powers the peer off; try it only when the peer may go down.
set -eu

me=${0##*/}

die() {
    echo "$me: $*" >&2
    exit 1
}

action=${1:-${FAILOVER_ACTION:-}}
case "$action" in
off | on | reboot | status) ;;
'') die "no action; usage: $me off|on|reboot|status (peer in FAILOVER_PEER)" ;;
*) die "unknown action \"$action\"; usage: $me off|on|reboot|status" ;;
esac

peer=${FAILOVER_PEER:-}
case "$peer" in
'') die "FAILOVER_PEER is not set (the daemon sets it to node.peer_name; by hand: FAILOVER_PEER=b $me $action)" ;;
*/* | .*) die "FAILOVER_PEER=\"$peer\" is not a plain name" ;;
esac

settings=${FENCE_ENV:-/etc/failover/fence-$peer.env}
[ -f "$settings" ] || die "settings file $settings not found (set BMC, BMC_USER and BMC_PASSWORD_FILE there, or point FENCE_ENV at another file)"
[ -r "$settings" ] || die "settings file $settings is not readable"
# It is sourced as root: refuse one that anybody may write.
[ -z "$(find "$settings" -prune -perm -0002)" ] || die "settings file $settings is world-writable; chmod 600 it"

# Only the settings file decides these, not the daemon's environment.
BMC=
BMC_USER=
BMC_PASSWORD_FILE=
BMC_OPTS=
# shellcheck disable=SC1090
. "$settings"

[ -n "$BMC" ] || die "$settings: BMC is not set (the address of ${peer}'s BMC)"
[ -n "$BMC_USER" ] || die "$settings: BMC_USER is not set"
[ -n "$BMC_PASSWORD_FILE" ] || die "$settings: BMC_PASSWORD_FILE is not set"
[ -r "$BMC_PASSWORD_FILE" ] || die "$settings: BMC_PASSWORD_FILE $BMC_PASSWORD_FILE is not readable"
command -v ipmitool >/dev/null 2>&1 || die "ipmitool not found in PATH (apt-get install ipmitool)"

# ipmitool with the BMC, user and password file; BMC_OPTS is split into words on purpose.
ipmi() {
    # shellcheck disable=SC2086
    ipmitool -I lanplus -H "$BMC" -U "$BMC_USER" -f "$BMC_PASSWORD_FILE" $BMC_OPTS "$@"
}

# The same as the last step of an action: replaces this shell, so that the daemon's kill on
# boot.timeout reaches ipmitool itself.
ipmi_exec() {
    # shellcheck disable=SC2086
    exec ipmitool -I lanplus -H "$BMC" -U "$BMC_USER" -f "$BMC_PASSWORD_FILE" $BMC_OPTS "$@"
}

# Prints "on" or "off"; exits 1 (with ipmitool's answer on stderr) when it cannot tell.
power_state() {
    if ! out=$(ipmi chassis power status); then
        die "ipmitool chassis power status on $BMC failed"
    fi
    case "$(printf '%s' "$out" | tr '[:upper:]' '[:lower:]')" in
    *"power is off"*) echo off ;;
    *"power is on"*) echo on ;;
    *) die "unexpected answer from $BMC: $out" ;;
    esac
}

case "$action" in
status)
    # stdout is exactly "on" or "off": the daemon compares it.
    power_state
    ;;
off)
    echo "powering $peer off through $BMC"
    ipmi_exec chassis power off
    ;;
on)
    echo "powering $peer on through $BMC"
    ipmi_exec chassis power on
    ;;
reboot)
    # Many BMCs refuse to power-cycle a chassis that is off: power it on instead.
    state=$(power_state) || exit 1
    if [ "$state" = off ]; then
        echo "$peer is off; powering it on through $BMC"
        ipmi_exec chassis power on
    fi
    echo "power-cycling $peer through $BMC"
    ipmi_exec chassis power cycle
    ;;
esac
