//! The window driver: a pure state machine that turns what the chain says into what a node does
//! next (docs/protocol.md §12). No clock, no I/O, no randomness: the node feeds it every block
//! in order ([`Driver::observe`]), asks for the next [`Action`] ([`Driver::next_action`]), executes
//! it, and reports back ([`Driver::done`]). Miners and validators are executors of its actions.
//!
//! A node's model is the *base* of one window `W`: the global model after the outer steps of
//! every window before `W`. For `W` it trains (while the chain is in `W`), uploads (once the put
//! window opens, at the first block of `W + 1`), and, once a block shows the put window closed,
//! gathers `W`'s payloads and applies the outer step, which makes it the base of `W + 1`. A node
//! that is behind (restarted, or new) replays windows whose put window closed without training.

use std::collections::BTreeMap;

use crate::window::WindowSchedule;

/// One block as the driver needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub number: u64,
    pub timestamp_ms: u64,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Train on `window`'s assigned samples from the base model; stop early once the chain
    /// reaches `stop_at_block` (the put window's opening block), so the upload is in time.
    Train { window: u64, stop_at_block: u64 },
    /// Encode, sign and upload the trained window's payload; the put window is open.
    Upload { window: u64 },
    /// Gather `window`'s payloads, aggregate, apply the outer step; the put window closed at
    /// `put_closed_ms` after opening at `put_opened_ms`. `replay` when the node did not take
    /// part in the window (it is catching up).
    Apply { window: u64, put_opened_ms: u64, put_closed_ms: u64, replay: bool },
    /// Nothing to do until the next block.
    Wait,
}

/// How far the node got in its base window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not trained yet.
    Fresh,
    /// Trained; the payload is ready to upload.
    Trained,
    /// Uploaded.
    Uploaded,
    /// Too late to take part (the node started or resumed after the window's training time).
    Missed,
}

/// A completed action, reported back to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Trained {
        window: u64,
    },
    Uploaded {
        window: u64,
    },
    /// The upload could not be made in time (the put window closed, or storage failed for good).
    UploadFailed {
        window: u64,
    },
    Applied {
        window: u64,
    },
}

/// The driver's whole state; plain data, so a node can persist it and a test can build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    schedule: WindowSchedule,
    put_window_ms: u64,
    /// The window the node's model is the base of.
    pub base_window: u64,
    pub phase: Phase,
    /// Timestamps of the put-window opening blocks seen, by window, for the base window and
    /// later ones (when windows are shorter than the put window, the next one can open first).
    pub opened_ms: BTreeMap<u64, u64>,
    /// The latest block observed.
    pub latest: Option<Block>,
    /// The chain's best block number, as far as the node knows (at least `latest`).
    pub head: u64,
    /// Whether this node trains and uploads (miners) or only follows the model (validators
    /// before the Gauntlet, or a node told not to mine).
    pub trains: bool,
}

impl Driver {
    /// A driver whose model is the base of `base_window`.
    pub fn new(schedule: WindowSchedule, put_window_secs: u64, base_window: u64, trains: bool) -> Driver {
        Driver {
            schedule,
            put_window_ms: put_window_secs.saturating_mul(1000),
            base_window,
            phase: Phase::Fresh,
            opened_ms: BTreeMap::new(),
            latest: None,
            head: 0,
            trains,
        }
    }

    /// The first block a node resuming with this base window must observe: the window's first
    /// block, so that it sees the put window's opening block again.
    pub fn resume_from_block(&self) -> u64 {
        self.schedule.first_block(self.base_window)
    }

    /// Takes the next block of the chain and the chain's best block number (blocks must come
    /// in order; a repeated or older block is ignored). While `head` is beyond the block's
    /// window the node is replaying history and does not train.
    pub fn observe(&mut self, block: Block, head: u64) {
        self.head = self.head.max(head).max(block.number);
        if self.latest.is_some_and(|l| block.number <= l.number) {
            return;
        }
        self.latest = Some(block);
        // The first block of window v + 1 opens v's put window.
        if let Some(v) = self.schedule.window_of(block.number).checked_sub(1)
            && self.schedule.put_window_block(v) == block.number
            && v >= self.base_window
        {
            self.opened_ms.insert(v, block.timestamp_ms);
        }
    }

    /// What to do now, given every block observed so far.
    pub fn next_action(&mut self) -> Action {
        let Some(latest) = self.latest else { return Action::Wait };
        let w = self.base_window;
        let opened_ms = self.opened_ms.get(&w).copied();
        if let Some(opened) = opened_ms {
            let closed = opened.saturating_add(self.put_window_ms);
            if latest.timestamp_ms > closed {
                let replay = !matches!(self.phase, Phase::Uploaded);
                return Action::Apply { window: w, put_opened_ms: opened, put_closed_ms: closed, replay };
            }
        }
        if !self.trains {
            return Action::Wait;
        }
        let put_block = self.schedule.put_window_block(w);
        match self.phase {
            Phase::Fresh if self.head >= put_block => {
                // The chain is past W's training time: too late to take part honestly.
                self.phase = Phase::Missed;
                Action::Wait
            }
            Phase::Fresh if latest.number >= self.schedule.first_block(w) => {
                Action::Train { window: w, stop_at_block: put_block }
            }
            Phase::Trained if opened_ms.is_some() => Action::Upload { window: w },
            _ => Action::Wait,
        }
    }

    /// Records a completed action.
    pub fn done(&mut self, done: Done) {
        match done {
            Done::Trained { window } if window == self.base_window => self.phase = Phase::Trained,
            Done::Uploaded { window } if window == self.base_window => self.phase = Phase::Uploaded,
            Done::UploadFailed { window } if window == self.base_window => self.phase = Phase::Missed,
            Done::Applied { window } if window == self.base_window => {
                self.opened_ms.remove(&window);
                self.base_window += 1;
                self.phase = Phase::Fresh;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
