use std::time::Duration;

use super::timing::*;

const MS: u64 = 1_000_000;

#[test]
fn stretching_covers_the_slowest_and_fastest_clock() {
    let b = Bound::default();
    let d = b.hold(Duration::from_millis(40));
    // 40 ms * 1.01 / 0.99 = 40.808... ms, rounded up.
    assert_eq!(d, Duration::from_nanos(40_808_081));
    assert_eq!(
        Bound::new(0).unwrap().stretch(Duration::from_millis(5)),
        Duration::from_millis(5)
    );
    assert!(Bound::new(1_000_000).is_none());
}

/// The timing argument, exhaustively over extreme clock rates and delays: whatever the rates
/// (within the bound) and the delay of the request, the grantor's hold ends (in real time)
/// no earlier than the primary's lease does.
#[test]
fn a_grant_never_outlives_the_grantors_hold_in_real_time() {
    let b = Bound::default();
    let lease = Duration::from_millis(40);
    let r = b.ppm() as f64 / 1e6;
    for primary_rate in [1.0 - r, 1.0, 1.0 + r] {
        for grantor_rate in [1.0 - r, 1.0, 1.0 + r] {
            for delay_ms in [0.0, 0.1, 5.0, 39.0] {
                // Real time: request sent at 0, received at delay.
                let lease_end = lease.as_secs_f64() * 1e3 / primary_rate;
                let hold_end = delay_ms + b.hold(lease).as_secs_f64() * 1e3 / grantor_rate;
                assert!(
                    hold_end >= lease_end,
                    "rates {primary_rate} {grantor_rate}, delay {delay_ms}: {hold_end} < {lease_end}"
                );
            }
        }
    }
}

#[test]
fn the_holder_counts_from_the_send_and_ignores_grants_it_did_not_ask_for() {
    let mut h = Holder::new(Duration::from_millis(40));
    assert!(!h.valid(0));
    let s1 = h.request(100 * MS);
    let s2 = h.request(110 * MS);
    assert_eq!(h.granted(s2), Some(150 * MS));
    // A late grant for the older request does not shorten or extend it.
    assert_eq!(h.granted(s1), None);
    assert!(h.valid(149 * MS) && !h.valid(150 * MS));
    assert_eq!(h.remaining(140 * MS), Duration::from_millis(10));
    assert_eq!(h.granted(999), None, "never sent");
    assert_eq!(h.granted(0), None);
    // A request forgotten (64 newer ones since) is not acted on.
    let old = h.request(200 * MS);
    for i in 0..64 {
        h.request(201 * MS + i);
    }
    assert_eq!(h.granted(old), None);
}

#[test]
fn a_grantor_refuses_revoked_and_older_epochs_and_stops_on_demand() {
    let lease = Duration::from_millis(40);
    let mut g = Grantor::new(Bound::default(), lease, 3);
    assert_eq!(g.request(3, lease, 0), Err(Refusal::Revoked));
    assert_eq!(g.request(4, lease, 10 * MS), Ok(lease));
    assert_eq!(g.outstanding(10 * MS), Bound::default().hold(lease));
    assert_eq!(g.request(5, lease, 20 * MS), Ok(lease));
    assert_eq!(
        g.request(4, lease, 21 * MS),
        Err(Refusal::Revoked),
        "a newer primary is known"
    );
    g.stop();
    assert_eq!(g.request(5, lease, 30 * MS), Err(Refusal::Stopped));
    // The last grant (received at 20 ms) may run until 20 ms + hold.
    let left = g.outstanding(30 * MS);
    assert_eq!(
        left,
        Bound::default().hold(lease) - Duration::from_millis(10)
    );
    g.revoke(5);
    g.resume();
    assert_eq!(g.request(5, lease, 40 * MS), Err(Refusal::Revoked));
    assert_eq!(g.revoked(), 5);
    assert_eq!(g.request(6, lease, 40 * MS), Ok(lease));
    // A longer request gets this grantor's lease; a shorter one what it asked.
    assert_eq!(g.request(6, lease * 2, 41 * MS), Ok(lease));
    assert_eq!(g.request(6, lease / 2, 42 * MS), Ok(lease / 2));
}

#[test]
fn the_monitor_waits_for_the_later_of_both_grantors() {
    let b = Bound::default();
    assert_eq!(takeover_at(b, 50 * MS, 10 * MS, Duration::ZERO), 50 * MS);
    let t = takeover_at(b, 50 * MS, 30 * MS, Duration::from_millis(30));
    assert_eq!(
        t,
        30 * MS + b.stretch(Duration::from_millis(30)).as_nanos() as u64
    );
}

#[test]
fn clock_rates_are_measured_over_a_baseline_and_judged_against_the_bound() {
    let mut c = RateCheck::new(Bound::default(), Duration::from_secs(10));
    assert_eq!(c.sample(0, 5_000), None);
    assert_eq!(
        c.sample(5_000 * MS, 5_000 * MS),
        None,
        "baseline not yet passed"
    );
    // 10 s here, 10.1 s there: 1 % fast, within twice the bound.
    assert_eq!(c.sample(10_000 * MS, 10_100 * MS + 5_000), Some(10_000));
    assert!(!c.suspect());
    // The next 10 s here are 10.3 s there: 3 %.
    assert_eq!(c.sample(20_000 * MS, 20_400 * MS + 5_000), Some(30_000));
    assert!(c.suspect());
    assert_eq!(c.rate_ppm(), Some(30_000));
}
