//! The Gauntlet: per-window evaluation of miners' uploads (loss before and after each update on
//! its own and on random data, freshness, sync, originality) and the scores and weights that
//! follow. It builds on the protocol core in `ferrum-common`; the evaluation itself needs the
//! model and codec crates that are not in this build yet, so this crate holds no logic yet.
