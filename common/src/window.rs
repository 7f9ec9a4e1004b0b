//! Windows: `window = block / blocks_per_window`, the put window in which a window's uploads are
//! accepted, and the block whose hash seeds the window's random data.
//!
//! Pure functions over block numbers and chain timestamps; the chain client supplies both.

use crate::config::WindowConfig;

/// Window arithmetic for one config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSchedule {
    blocks_per_window: u64,
    put_window_ms: u64,
    seed_offset_blocks: u64,
}

impl WindowSchedule {
    /// Builds the schedule; the config must be valid (`blocks_per_window > 0`).
    pub fn new(cfg: &WindowConfig) -> Self {
        WindowSchedule {
            blocks_per_window: cfg.blocks_per_window.max(1),
            put_window_ms: cfg.put_window_secs.saturating_mul(1000),
            seed_offset_blocks: seed_offset_blocks(cfg),
        }
    }

    /// The window a block belongs to.
    pub fn window_of(&self, block: u64) -> u64 {
        block / self.blocks_per_window
    }

    /// First block of a window.
    pub fn first_block(&self, window: u64) -> u64 {
        window.saturating_mul(self.blocks_per_window)
    }

    /// The block whose timestamp opens window `window`'s put window: the first block of the next.
    pub fn put_window_block(&self, window: u64) -> u64 {
        self.first_block(window.saturating_add(1))
    }

    /// The put window of a window, given the timestamp (ms) of [`put_window_block`](Self::put_window_block).
    pub fn put_window(&self, opening_block_timestamp_ms: u64) -> PutWindow {
        PutWindow {
            opens_ms: opening_block_timestamp_ms,
            closes_ms: opening_block_timestamp_ms.saturating_add(self.put_window_ms),
        }
    }

    /// The block whose hash seeds window `window`'s random data. It lies after the put window
    /// closes (at the nominal block time), so no miner knows the data before its upload is due.
    pub fn random_seed_block(&self, window: u64) -> u64 {
        self.put_window_block(window).saturating_add(self.seed_offset_blocks)
    }
}

/// Blocks from the start of the next window to the random-data seed block:
/// `ceil(put_window_secs / block_time_secs) + 1`.
pub fn seed_offset_blocks(cfg: &WindowConfig) -> u64 {
    let blocks = (cfg.put_window_secs as f64 / cfg.block_time_secs).ceil();
    if blocks.is_finite() && blocks >= 0.0 { (blocks as u64).saturating_add(1) } else { u64::MAX }
}

/// The interval in which uploads for a window are accepted, in chain milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutWindow {
    pub opens_ms: u64,
    pub closes_ms: u64,
}

/// How far before the (second-truncated) opening of the put window an upload still counts as
/// on time (docs/protocol.md §2).
pub const OPENING_SLACK_MS: u64 = 1000;

/// Where an upload's time falls relative to the put window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Before the window opened: made before the training window ended, or a replay.
    TooEarly {
        by_ms: u64,
    },
    OnTime,
    /// After the window closed: possibly copied from an on-time upload.
    TooLate {
        by_ms: u64,
    },
}

impl PutWindow {
    /// Classifies an object's `LastModified` (ms since the epoch).
    ///
    /// S3 reports `LastModified` in whole seconds, truncated, so the opening bound is compared at
    /// second resolution, and [`OPENING_SLACK_MS`] before that: filesystems stamp files from a
    /// coarse clock that lags the fine one by a few ms, and a storage server's clock is not the
    /// chain's. An honest upload made after the opening block was seen is never early.
    pub fn classify(&self, last_modified_ms: u64) -> Freshness {
        let opens_floor = (self.opens_ms - self.opens_ms % 1000).saturating_sub(OPENING_SLACK_MS);
        if last_modified_ms < opens_floor {
            Freshness::TooEarly { by_ms: self.opens_ms - last_modified_ms }
        } else if last_modified_ms > self.closes_ms {
            Freshness::TooLate { by_ms: last_modified_ms - self.closes_ms }
        } else {
            Freshness::OnTime
        }
    }

    /// Whether `now_ms` is inside the put window (for a miner deciding whether it may still upload).
    pub fn is_open_at(&self, now_ms: u64) -> bool {
        (self.opens_ms..=self.closes_ms).contains(&now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(blocks_per_window: u64, put_window_secs: u64, block_time_secs: f64) -> WindowConfig {
        WindowConfig { blocks_per_window, put_window_secs, block_time_secs }
    }

    #[test]
    fn window_boundaries() {
        let s = WindowSchedule::new(&cfg(125, 70, 12.0));
        assert_eq!(s.window_of(0), 0);
        assert_eq!(s.window_of(124), 0);
        assert_eq!(s.window_of(125), 1);
        assert_eq!(s.window_of(6_475_250), 51_802);
        assert_eq!(s.first_block(51_802), 6_475_250);
        assert_eq!(s.put_window_block(51_802), 6_475_375);
        for b in [0, 1, 124, 125, 999_999] {
            let w = s.window_of(b);
            assert!(s.first_block(w) <= b && b < s.first_block(w + 1));
        }
    }

    #[test]
    fn seed_block_follows_put_window() {
        // 70 s at 12 s blocks: 6 blocks cover the put window, the 7th is past it.
        let s = WindowSchedule::new(&cfg(125, 70, 12.0));
        assert_eq!(seed_offset_blocks(&cfg(125, 70, 12.0)), 7);
        assert_eq!(s.random_seed_block(10), 11 * 125 + 7);
        assert_eq!(seed_offset_blocks(&cfg(3, 10, 12.0)), 2);
        assert_eq!(seed_offset_blocks(&cfg(10, 12, 12.0)), 2);
    }

    #[test]
    fn put_window_classification() {
        let s = WindowSchedule::new(&cfg(10, 30, 12.0));
        let pw = s.put_window(1_700_000_000_500);
        assert_eq!(pw.closes_ms, 1_700_000_030_500);
        assert_eq!(pw.classify(1_699_999_998_999), Freshness::TooEarly { by_ms: 1_501 });
        // Same second as the opening: S3 truncates LastModified, so this is on time; so is a
        // coarse filesystem clock a few ms behind the block's (up to the slack).
        assert_eq!(pw.classify(1_700_000_000_000), Freshness::OnTime);
        assert_eq!(pw.classify(1_699_999_999_996), Freshness::OnTime);
        assert_eq!(pw.classify(1_699_999_999_000), Freshness::OnTime);
        assert_eq!(pw.classify(1_700_000_030_500), Freshness::OnTime);
        assert_eq!(pw.classify(1_700_000_031_000), Freshness::TooLate { by_ms: 500 });
        assert!(pw.is_open_at(1_700_000_010_000));
        assert!(!pw.is_open_at(1_700_000_040_000));
    }
}
