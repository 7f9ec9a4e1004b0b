use super::*;
use crate::config::WindowConfig;

/// 3 blocks per window, a 10 s put window, blocks every 6 s unless a case says otherwise.
fn driver(base: u64, trains: bool) -> Driver {
    let cfg = WindowConfig { blocks_per_window: 3, put_window_secs: 10, block_time_secs: 12.0 };
    Driver::new(WindowSchedule::new(&cfg), cfg.put_window_secs, base, trains)
}

/// One row: feed a block (number, timestamp in s) with a head, expect the actions the node
/// runs until the driver says Wait, each reported done as it would be.
struct Row {
    block: u64,
    at_s: u64,
    head: u64,
    expect: &'static [Expect],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Train(u64),
    Upload(u64),
    Apply(u64, bool),
    /// Upload attempted but failed.
    UploadFails(u64),
}

fn run(d: &mut Driver, rows: &[Row]) {
    for (i, r) in rows.iter().enumerate() {
        d.observe(Block { number: r.block, timestamp_ms: r.at_s * 1000 }, r.head);
        let mut got = Vec::new();
        let mut expected = r.expect.iter();
        loop {
            let action = d.next_action();
            let done = match action {
                Action::Wait => break,
                Action::Train { window, stop_at_block } => {
                    assert_eq!(stop_at_block, (window + 1) * 3, "row {i}");
                    got.push(Expect::Train(window));
                    Done::Trained { window }
                }
                Action::Upload { window } => {
                    if expected.clone().any(|e| *e == Expect::UploadFails(window)) {
                        got.push(Expect::UploadFails(window));
                        Done::UploadFailed { window }
                    } else {
                        got.push(Expect::Upload(window));
                        Done::Uploaded { window }
                    }
                }
                Action::Apply { window, put_opened_ms, put_closed_ms, replay } => {
                    assert_eq!(put_closed_ms, put_opened_ms + 10_000, "row {i}");
                    got.push(Expect::Apply(window, replay));
                    Done::Applied { window }
                }
            };
            d.done(done);
            assert!(got.len() < 100, "row {i}: the driver loops");
        }
        let want: Vec<Expect> = r.expect.to_vec();
        assert_eq!(got, want, "row {i} (block {})", r.block);
        expected.next();
    }
}

const fn row(block: u64, at_s: u64, head: u64, expect: &'static [Expect]) -> Row {
    Row { block, at_s, head, expect }
}

use Expect::*;

#[test]
fn a_live_miner_trains_uploads_and_applies_each_window() {
    let mut d = driver(0, true);
    run(
        &mut d,
        &[
            row(0, 0, 0, &[Train(0)]),
            row(1, 6, 1, &[]),
            row(2, 12, 2, &[]),
            row(3, 18, 3, &[Upload(0)]), // first block of window 1 opens window 0's put window
            row(4, 24, 4, &[]),          // 6 s after opening: still open
            row(5, 29, 5, &[Apply(0, false), Train(1)]), // 11 s: closed; base is now window 1
            row(6, 35, 6, &[Upload(1)]),
            row(7, 41, 7, &[]),
            row(8, 47, 8, &[Apply(1, false), Train(2)]),
        ],
    );
    assert_eq!(d.base_window, 2);
    assert_eq!(d.phase, Phase::Trained);
}

#[test]
fn a_block_exactly_at_the_close_keeps_the_window_open() {
    let mut d = driver(0, true);
    run(
        &mut d,
        &[
            row(0, 0, 0, &[Train(0)]),
            row(3, 100, 3, &[Upload(0)]),
            row(4, 110, 4, &[]),
            row(5, 111, 5, &[Apply(0, false), Train(1)]),
        ],
    );
}

#[test]
fn a_time_gap_closes_the_window_on_the_next_block() {
    // Block production stalls for a minute after the put window opens.
    let mut d = driver(0, true);
    run(&mut d, &[row(1, 0, 1, &[Train(0)]), row(3, 10, 3, &[Upload(0)]), row(4, 70, 4, &[Apply(0, false), Train(1)])]);
}

#[test]
fn a_node_far_behind_replays_without_training_then_joins() {
    // Restarted with base window 0 while the chain is at block 20 (window 6), blocks every 6 s:
    // window k opens at block 3(k + 1) and closes (10 s later) at block 3(k + 1) + 2.
    let mut d = driver(0, true);
    let rows: Vec<Row> = (0..=20)
        .map(|b| {
            let expect: &'static [Expect] = match b {
                5 => &[Apply(0, true)],
                8 => &[Apply(1, true)],
                11 => &[Apply(2, true)],
                14 => &[Apply(3, true)],
                17 => &[Apply(4, true)],
                20 => &[Apply(5, true), Train(6)],
                _ => &[],
            };
            row(b, b * 6, 20, expect)
        })
        .collect();
    run(&mut d, &rows);
    assert_eq!(d.base_window, 6);
}

#[test]
fn windows_shorter_than_the_put_window_overlap() {
    // Blocks every second: window 1's put window opens (block 6) before window 0's closes.
    let mut d = driver(0, true);
    run(
        &mut d,
        &[
            row(0, 0, 0, &[Train(0)]),
            row(3, 3, 3, &[Upload(0)]),
            row(6, 6, 6, &[]),
            row(9, 9, 9, &[]),
            row(14, 14, 14, &[Apply(0, false)]), // window 1's training time passed while waiting
            row(15, 17, 15, &[Apply(1, true)]),  // 17 > 6 + 10: window 1 closed too
        ],
    );
    assert_eq!(d.base_window, 2);
}

#[test]
fn joining_mid_window_trains_and_joining_after_it_waits_for_the_next() {
    let mut d = driver(4, true);
    run(&mut d, &[row(13, 0, 13, &[Train(4)])]);
    let mut late = driver(4, true);
    run(&mut late, &[row(15, 0, 15, &[])]);
    assert_eq!(late.phase, Phase::Missed, "window 4's training time is over");
    run(&mut late, &[row(16, 11, 16, &[Apply(4, true), Train(5)])]);
}

#[test]
fn a_failed_upload_still_applies_as_a_replay() {
    let mut d = driver(0, true);
    run(
        &mut d,
        &[row(0, 0, 0, &[Train(0)]), row(3, 18, 3, &[UploadFails(0)]), row(4, 30, 4, &[Apply(0, true), Train(1)])],
    );
}

#[test]
fn a_follower_never_trains() {
    let mut d = driver(0, false);
    run(&mut d, &[row(0, 0, 0, &[]), row(3, 18, 3, &[]), row(4, 30, 4, &[Apply(0, true)])]);
}

#[test]
fn repeated_and_older_blocks_are_ignored() {
    let mut d = driver(0, true);
    run(&mut d, &[row(0, 0, 0, &[Train(0)]), row(3, 18, 3, &[Upload(0)]), row(3, 99, 3, &[]), row(2, 99, 3, &[])]);
    assert_eq!(d.opened_ms.get(&0), Some(&18_000));
}

#[test]
fn resume_starts_at_the_base_windows_first_block() {
    assert_eq!(driver(7, true).resume_from_block(), 21);
}
