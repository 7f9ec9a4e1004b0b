use super::*;
use ferrum_common::Preset;

fn config() -> SubnetConfig {
    Preset::Test.config()
}

fn honest(gain: f64) -> Outcome {
    received(5.0 - 2.0 * gain, 5.0 - gain, Some(0))
}

/// A payload with losses measured from 5.0 before, and its lag.
fn received(own_after: f64, random_after: f64, lag: Option<u64>) -> Outcome {
    Outcome::Received { losses: Some(Losses::new(5.0, own_after, 5.0, random_after)), lag, copy_of: None }
}

fn missing() -> Outcome {
    Outcome::Missing { reason: "missing: no payload uploaded".into(), uploaded: false }
}

fn input(window: u64, miners: Vec<(u16, Outcome)>) -> WindowInput {
    WindowInput {
        window,
        global_step: window,
        miners: miners.into_iter().map(|(u, o)| (u, (format!("hotkey-{u}"), o))).collect(),
    }
}

fn non_burn_share(report: &WindowReport, uids: &[u16]) -> f64 {
    let total: f64 = report.weights.iter().filter(|(u, _)| **u != 0).map(|(_, w)| w).sum();
    let part: f64 = report.weights.iter().filter(|(u, _)| uids.contains(u)).map(|(_, w)| w).sum();
    if total > 0.0 { part / total } else { 0.0 }
}

/// Honest miners against every kind of cheat, as plain facts: honest ones end with nearly all
/// of the weight, and every cheat has a recorded reason.
#[test]
fn honest_miners_take_the_weight_and_cheats_get_reasons() {
    let c = config();
    let mut ledger = Ledger::default();
    let mut last = None;
    for w in 0..12u64 {
        let noise = received(6.0, 6.1, Some(0));
        let zeros = received(5.0, 5.0, Some(0));
        let wrong_data = received(4.95, 4.9, Some(0));
        let stale = received(4.8, 4.9, None);
        let copier = match received(4.8, 4.9, Some(0)) {
            Outcome::Received { losses, lag, .. } => Outcome::Received {
                losses,
                lag,
                copy_of: Some(CopyOf { uid: 1, overlap: 1.0, excess: 1.0, identical: true, evidence_windows: 3 }),
            },
            other => other,
        };
        let report = ledger.update(
            &input(
                w,
                vec![
                    (1, honest(0.10)),
                    (2, honest(0.12)),
                    (3, honest(0.08)),
                    (10, noise),
                    (11, zeros),
                    (12, wrong_data),
                    (13, stale),
                    (14, Outcome::Invalid { reason: "signature does not verify".into() }),
                    // Mines two windows, then disappears.
                    (15, if w < 2 { honest(0.1) } else { missing() }),
                    (16, copier),
                ],
            ),
            &c,
        );
        last = Some(report);
    }
    let report = last.expect("report");
    let share = non_burn_share(&report, &[1, 2, 3]);
    assert!(share >= 0.95, "honest share {share}: {:?}", report.weights);
    for cheat in 10..=16u16 {
        let w = report.weights.get(&cheat).copied().unwrap_or(0.0);
        assert!(w <= 0.01, "uid {cheat} weight {w}");
    }
    let why = |uid: u16| -> Vec<String> {
        report
            .uids
            .iter()
            .find(|r| r.uid == uid)
            .map(|r| r.penalties.iter().map(|p| p.reason.clone()).collect())
            .unwrap_or_default()
    };
    assert!(why(13).iter().any(|r| r.contains("out of sync")), "{:?}", why(13));
    assert!(why(14).iter().any(|r| r.contains("invalid upload")), "{:?}", why(14));
    assert!(why(15).iter().any(|r| r.contains("missing")), "{:?}", why(15));
    assert!(
        report.uids.iter().find(|r| r.uid == 16).is_some_and(|r| r.excluded_until.is_some()),
        "an exact copy is excluded"
    );
    assert!(
        report.uids.iter().find(|r| r.uid == 10).is_some_and(|r| r.gather_excluded),
        "three negative scores in a row"
    );
    assert!(
        report.uids.iter().find(|r| r.uid == 11).is_some_and(|r| r.binary_ema < 0.0),
        "zeros never beat random data"
    );
    // Each cheat is named by the rule that caught it, and the harmful ones (noise, the free
    // rider's zeros) are out of the gather set; honest miners are paid and kept in.
    let uid = |u: u16| report.uids.iter().find(|r| r.uid == u).expect("reported");
    for (u, rule) in [
        (10, Rule::Harmful),
        (11, Rule::Harmful),
        (12, Rule::OwnData),
        (13, Rule::Sync),
        (14, Rule::Invalid),
        (15, Rule::MissedWindows),
        (16, Rule::Copy),
    ] {
        assert_eq!(uid(u).verdict, Some(rule), "uid {u}: {}", uid(u).explain());
        assert!(uid(u).explain().starts_with(&format!("unpaid by rule {}", rule.name())), "{}", uid(u).explain());
    }
    assert!(uid(10).gather_excluded && uid(11).gather_excluded, "noise and zeros are judged harmful");
    // What a restarted validator leaves out of its first gather is what the report said.
    let flagged: Vec<u16> = report.uids.iter().filter(|u| u.gather_excluded).map(|u| u.uid).collect();
    assert_eq!(ledger.gather_excluded(report.window, &c), flagged);
    assert!(!uid(12).gather_excluded, "an update trained on other data still helps the model");
    for u in 1..=3 {
        assert_eq!(uid(u).verdict, None, "{}", uid(u).explain());
        assert!(!uid(u).gather_excluded);
    }
}

/// An update that lowers the loss at times but not on balance is left out once it has been
/// evaluated `negative_streak_exclusion` times, and taken back when its EMA turns positive.
#[test]
fn an_update_without_gain_on_balance_leaves_the_gather_set_and_can_return() {
    let c = config();
    let mut ledger = Ledger::default();
    let scores = [0.02, -0.03, 0.005, 0.0, 0.05, 0.05, 0.05];
    let mut seen = Vec::new();
    for (w, s) in scores.iter().enumerate() {
        let r =
            ledger.update(&input(w as u64, vec![(1, honest(0.1)), (2, received(5.0, 5.0 * (1.0 - s), Some(0)))]), &c);
        let u = r.uids.iter().find(|u| u.uid == 2).expect("reported").clone();
        seen.push((u.gather_excluded, ledger.records[&2].gradient_ema));
    }
    let out: Vec<bool> = seen.iter().map(|(x, _)| *x).collect();
    // EMA after each window: +1.0e-3, −5.5e-4, −2.7e-4, −2.6e-4, +2.3e-3, …: never three negative
    // scores in a row, yet at or below 0 from the third evaluation until the fifth.
    assert_eq!(out, [false, false, true, true, false, false, false], "{seen:?}");
}

#[test]
fn missed_uploads_escalate_then_exclude() {
    let c = config();
    let mut ledger = Ledger::default();
    for w in 0..6 {
        ledger.update(&input(w, vec![(1, honest(0.1)), (2, honest(0.1))]), &c);
    }
    let before = ledger.records[&2].final_score;
    assert!(before > 0.0);
    let r = ledger.update(&input(6, vec![(1, honest(0.1)), (2, missing())]), &c);
    let p2 = &r.uids[1].penalties;
    assert_eq!(p2[0].multiplier, 0.75, "{p2:?}");
    let r = ledger.update(&input(7, vec![(1, honest(0.1)), (2, missing())]), &c);
    assert_eq!(r.uids[1].penalties[0].multiplier, 0.5);
    let r = ledger.update(&input(8, vec![(1, honest(0.1)), (2, missing())]), &c);
    assert_eq!(r.uids[1].final_score, 0.0);
    assert!(r.uids[1].penalties.iter().any(|p| p.reason.contains("inactive")));
    ledger.update(&input(9, vec![(1, honest(0.1)), (2, missing())]), &c);
    let r = ledger.update(&input(10, vec![(1, honest(0.1)), (2, missing())]), &c);
    assert_eq!(r.uids[1].excluded_until, Some(30), "5 of the last 8 missed: excluded 20 windows");
    assert!(r.uids[1].gather_excluded);
}

#[test]
fn a_uid_that_never_uploaded_is_not_penalized_for_missing() {
    let c = config();
    let mut ledger = Ledger::default();
    for w in 0..10 {
        let r = ledger.update(&input(w, vec![(1, honest(0.1)), (2, missing())]), &c);
        assert!(r.uids[1].penalties.iter().all(|p| p.multiplier == 1.0), "{:?}", r.uids[1]);
        assert!(r.uids[1].excluded_until.is_none());
    }
    // Once it has uploaded, a miss counts.
    ledger.update(&input(10, vec![(1, honest(0.1)), (2, honest(0.1))]), &c);
    let r = ledger.update(&input(11, vec![(1, honest(0.1)), (2, missing())]), &c);
    assert_eq!(r.uids[1].penalties[0].multiplier, 0.75);
}

#[test]
fn a_new_hotkey_on_a_uid_starts_over() {
    let c = config();
    let mut ledger = Ledger::default();
    for w in 0..5 {
        ledger.update(&input(w, vec![(1, honest(0.1)), (2, honest(0.05))]), &c);
    }
    assert!(ledger.records[&1].evaluations == 5);
    let mut next = input(5, vec![(1, honest(0.1)), (2, honest(0.05))]);
    next.miners.get_mut(&1).expect("uid 1").0 = "someone-else".into();
    ledger.update(&next, &c);
    assert_eq!(ledger.records[&1].evaluations, 1);
    assert_eq!(ledger.records[&1].hotkey, "someone-else");
}

/// The evaluation history the selection reads: set by a window with losses, not by one received
/// without (not selected), and not carried over to a uid's new hotkey.
#[test]
fn the_last_evaluation_is_recorded_per_hotkey() {
    let c = config();
    let mut ledger = Ledger::default();
    ledger.update(&input(3, vec![(1, honest(0.1)), (2, honest(0.1))]), &c);
    let unevaluated = Outcome::Received { losses: None, lag: Some(0), copy_of: None };
    ledger.update(&input(4, vec![(1, honest(0.1)), (2, unevaluated)]), &c);
    let history = ledger.last_evaluated([(1, "hotkey-1"), (2, "hotkey-2"), (3, "hotkey-3")]);
    assert_eq!(history, [(1, 4), (2, 3)].into_iter().collect());
    assert!(ledger.last_evaluated([(1, "someone-else")]).is_empty());
}

/// Four honest miners, one always a little behind the others: the rating ranks it last every
/// window and its μ − 3σ goes below 0, yet its updates help and pass the own-data test, so the
/// rating floor pays it; with the floor off (the reference's rule) it gets nothing.
#[test]
fn the_last_of_a_small_honest_field_is_paid() {
    let run = |floor: f64| {
        let mut c = config();
        c.gauntlet.rating_floor = floor;
        let mut ledger = Ledger::default();
        let mut last = None;
        for w in 0..12u64 {
            let miners = vec![(1, honest(0.30)), (2, honest(0.31)), (3, honest(0.32)), (4, honest(0.10))];
            last = Some(ledger.update(&input(w, miners), &c));
        }
        last.expect("report")
    };
    let floored = run(1.0);
    let worst = floored.uids.iter().find(|u| u.uid == 4).expect("uid 4");
    assert!(worst.ordinal < 0.0, "ranked last every window: {worst:?}");
    assert!(non_burn_share(&floored, &[4]) > 0.0, "{:?}", floored.weights);
    assert_eq!(non_burn_share(&run(0.0), &[4]), 0.0, "without the floor the last of four earns nothing");
}
