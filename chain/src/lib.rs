//! Chain access for Ferrum nodes: the subtensor client over subxt, wallets, and an in-process
//! dev chain held to one conformance suite. Not in this build yet: the protocol core in
//! `ferrum-common` takes block numbers, timestamps and block hashes as plain inputs, so the
//! chain client plugs in at the edges.
