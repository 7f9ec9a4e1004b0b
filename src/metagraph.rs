//! `ferrum metagraph`: a subnet's neurons as Ferrum sees them, read from plain chain storage so
//! it works on every runtime Ferrum supports (the Bittensor SDK's and btcli's metagraph need
//! runtime APIs that older runtimes, such as the localnet's, lack).

use ferrum_chain::{Chain, ChainError, Commitment, Metagraph};
use ferrum_common::agreement;
use ferrum_common::gather::{self, Peer};
use ferrum_common::location::{Location, PeerUrlPolicy};
use serde::Serialize;

/// What a neuron is to the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The burn uid (the owner's hotkey): half of every weight vector.
    Burn,
    /// Committed a validator bucket.
    Validator,
    /// Committed a miner bucket.
    Miner,
    /// No Ferrum commitment.
    None,
}

/// One neuron's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub uid: u16,
    pub hotkey: String,
    pub coldkey: String,
    pub role: Role,
    /// Stake on the subnet, rao (alpha).
    pub stake: u64,
    /// Shares of 1.
    pub incentive: f64,
    pub dividends: f64,
    pub validator_permit: bool,
    pub active: bool,
    pub registered_at: u64,
    /// Block of its last weights (0: never set).
    pub last_update: u64,
    /// The weights it set: (uid, share of 1).
    pub weights_set: Vec<(u16, f64)>,
    /// Who sets a weight on it: (validator uid, share of 1 of that validator's vector).
    pub weighted_by: Vec<(u16, f64)>,
    /// Its commitment, as text, and the block it was written at.
    pub commitment: Option<String>,
    pub commitment_block: Option<u64>,
    /// Its gather records count toward every window's agreement.
    pub witness: bool,
    /// What keeps Ferrum's nodes from using it (empty: nothing).
    pub problems: Vec<String>,
}

/// The rows of a metagraph, with each neuron's commitment and weights; `policy` is what nodes
/// follow of peers' bucket URLs.
pub fn rows(
    metagraph: &Metagraph,
    commitments: &[Option<Commitment>],
    weights: &[Vec<(u16, u16)>],
    policy: &PeerUrlPolicy,
    burn_uid: u16,
) -> Vec<Row> {
    let parsed: Vec<Option<(String, bool)>> =
        commitments.iter().map(|c| c.as_ref().and_then(|c| gather::parse_commitment(&c.data))).collect();
    let peers: Vec<Peer> = metagraph
        .neurons
        .iter()
        .zip(&parsed)
        .map(|(n, p)| Peer {
            uid: n.uid,
            hotkey: n.hotkey,
            incentive: n.incentive,
            bucket: p.as_ref().map(|(url, _)| url.clone()),
            validator: p.as_ref().is_some_and(|(_, v)| *v),
            stake: n.stake,
            validator_permit: n.validator_permit,
        })
        .collect();
    let witnesses: Vec<u16> = agreement::witnesses(&peers).iter().map(|p| p.uid).collect();
    let shares = |w: &[(u16, u16)]| -> Vec<(u16, f64)> {
        let total: f64 = w.iter().map(|(_, v)| f64::from(*v)).sum();
        w.iter().map(|(u, v)| (*u, if total > 0.0 { f64::from(*v) / total } else { 0.0 })).collect()
    };
    metagraph
        .neurons
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let commitment = commitments.get(i).and_then(Option::as_ref);
            let parsed = parsed.get(i).and_then(Option::as_ref);
            let role = match parsed {
                _ if n.uid == burn_uid => Role::Burn,
                Some((_, true)) => Role::Validator,
                Some(_) => Role::Miner,
                None => Role::None,
            };
            let mut problems = Vec::new();
            match (commitment, parsed) {
                (None, _) if role != Role::Burn => problems.push("no commitment".to_string()),
                (Some(_), None) => problems.push("commitment is not a Ferrum bucket (`ferrum1 URL`)".to_string()),
                (_, Some((url, _))) => match Location::parse(url) {
                    Err(e) => problems.push(format!("bucket URL: {e}")),
                    Ok(at) => {
                        if let Err(e) = policy.check(&at) {
                            problems.push(format!("peers do not follow its bucket: {e}"));
                        }
                    }
                },
                _ => {}
            }
            if role == Role::Validator && !witnesses.contains(&n.uid) {
                problems.push(if n.stake == 0 {
                    "a validator without stake on the subnet: not a witness".to_string()
                } else {
                    "a validator without a permit: not a witness".to_string()
                });
            }
            let weighted_by = weights
                .iter()
                .enumerate()
                .filter_map(|(v, w)| shares(w).into_iter().find(|(u, _)| *u == n.uid).map(|(_, s)| (v as u16, s)))
                .collect();
            Row {
                uid: n.uid,
                hotkey: n.hotkey.to_ss58(),
                coldkey: n.coldkey.to_ss58(),
                role,
                stake: n.stake,
                incentive: f64::from(n.incentive) / f64::from(u16::MAX),
                dividends: f64::from(n.dividends) / f64::from(u16::MAX),
                validator_permit: n.validator_permit,
                active: n.active,
                registered_at: n.registered_at,
                last_update: n.last_update,
                weights_set: weights.get(i).map(|w| shares(w)).unwrap_or_default(),
                weighted_by,
                commitment: commitment.map(|c| String::from_utf8_lossy(&c.data).into_owned()),
                commitment_block: commitment.map(|c| c.block),
                witness: witnesses.contains(&n.uid),
                problems,
            }
        })
        .collect()
}

/// Reads a subnet's metagraph at `at` (default: the best block), each neuron's commitment and
/// weights, and makes the rows.
pub async fn read(
    chain: &impl Chain,
    netuid: u16,
    at: Option<u64>,
    policy: &PeerUrlPolicy,
    burn_uid: u16,
) -> Result<(u64, Vec<Row>), ChainError> {
    use futures::{StreamExt, TryStreamExt};
    let metagraph = chain.metagraph(netuid, at).await?;
    // Two reads a neuron, a few neurons at a time: a full subnet is 512 round trips.
    let reads = metagraph.neurons.iter().map(|n| async move {
        Ok::<_, ChainError>((chain.commitment(netuid, &n.hotkey).await?, chain.weights(netuid, n.uid).await?))
    });
    let (commitments, weights): (Vec<_>, Vec<_>) =
        futures::stream::iter(reads).buffered(16).try_collect::<Vec<_>>().await?.into_iter().unzip();
    Ok((metagraph.block, rows(&metagraph, &commitments, &weights, policy, burn_uid)))
}

/// The rows as a table for a terminal.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>4} {:<9} {:<10} {:>14} {:>8} {:>8} {:>6} {:>8} {:<22} problems\n",
        "uid", "role", "hotkey", "stake (α)", "incent.", "divid.", "permit", "updated", "weights set"
    );
    for r in rows {
        let weights: Vec<String> = r.weights_set.iter().map(|(u, s)| format!("{u}:{:.2}", s)).collect();
        let role = match r.role {
            Role::Burn => "burn",
            Role::Validator if r.witness => "validator",
            Role::Validator => "valid.(-)",
            Role::Miner => "miner",
            Role::None => "-",
        };
        out.push_str(&format!(
            "{:>4} {:<9} {:<10} {:>14.3} {:>8.4} {:>8.4} {:>6} {:>8} {:<22} {}\n",
            r.uid,
            role,
            &r.hotkey[..8.min(r.hotkey.len())],
            r.stake as f64 / 1e9,
            r.incentive,
            r.dividends,
            if r.validator_permit { "yes" } else { "no" },
            r.last_update,
            if weights.is_empty() { "-".to_string() } else { weights.join(" ") },
            r.problems.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_chain::Neuron;
    use ferrum_common::Hotkey;

    fn neuron(uid: u16, stake: u64, permit: bool) -> Neuron {
        Neuron {
            uid,
            hotkey: Hotkey([uid as u8 + 1; 32]),
            coldkey: Hotkey([9; 32]),
            stake,
            validator_permit: permit,
            incentive: if uid == 2 { 65535 } else { 0 },
            dividends: if uid == 1 { 65535 } else { 0 },
            active: true,
            last_update: 0,
            registered_at: 1,
        }
    }

    fn commit(text: &str) -> Option<Commitment> {
        Some(Commitment { block: 5, data: text.as_bytes().to_vec() })
    }

    #[test]
    fn roles_witnesses_weights_and_problems() {
        let metagraph = Metagraph {
            netuid: 2,
            block: 10,
            neurons: vec![
                neuron(0, 5, true),
                neuron(1, 1000, true),
                neuron(2, 0, true),
                neuron(3, 0, true),
                neuron(4, 0, false),
            ],
        };
        let commitments = vec![
            None,
            commit("ferrum1v s3://b/v1?endpoint=https://s3.example.com"),
            commit("ferrum1 s3://b/m2"),
            commit("ferrum1 s3://b/m3?endpoint=http://10.0.0.3:9000"),
            commit("hello"),
        ];
        let weights = vec![vec![], vec![(0, 65535), (2, 32768), (3, 32767)], vec![], vec![], vec![]];
        let rows = rows(&metagraph, &commitments, &weights, &PeerUrlPolicy::default(), 0);
        let roles: Vec<Role> = rows.iter().map(|r| r.role).collect();
        assert_eq!(roles, [Role::Burn, Role::Validator, Role::Miner, Role::Miner, Role::None]);
        assert!(rows[1].witness && rows[1].problems.is_empty(), "{:?}", rows[1]);
        assert!(rows[0].problems.is_empty(), "the burn uid needs no commitment");
        assert!(rows[2].problems.is_empty());
        assert!(rows[3].problems[0].contains("private"), "{:?}", rows[3].problems);
        assert!(rows[4].problems[0].contains("not a Ferrum bucket"));
        assert!((rows[1].weights_set[0].1 - 0.5).abs() < 1e-4);
        assert_eq!(rows[2].weighted_by.len(), 1);
        assert_eq!(rows[2].weighted_by[0].0, 1);
        assert!((rows[2].incentive - 1.0).abs() < 1e-9 && (rows[1].dividends - 1.0).abs() < 1e-9);
        // A validator without stake is named as no witness.
        let mut unstaked = metagraph.clone();
        unstaked.neurons[1].stake = 0;
        let rows = super::rows(&unstaked, &commitments, &weights, &PeerUrlPolicy::default(), 0);
        assert!(!rows[1].witness && rows[1].problems[0].contains("without stake"), "{:?}", rows[1]);
        assert!(table(&rows).contains("valid.(-)"));
    }
}
