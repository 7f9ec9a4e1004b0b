//! The Gauntlet: per-window evaluation of miners' uploads (loss before and after each update on
//! its own and on random data, freshness, sync, originality) and the scores and weights that
//! follow, as pure functions over plain data on top of the protocol core in `ferrum-common`.
//! Empty so far: the scoring rules land with the validator loop.
