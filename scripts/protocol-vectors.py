#!/usr/bin/env python3
"""Independent reference implementation of Ferrum's sample assignment, samples digest and
index code (docs/protocol.md).

Written from the spec, not from the Rust code, to cross-check the test vectors pinned in
common/src/assignment/tests.rs. Needs the `blake3` package (pip install blake3).

    python3 scripts/protocol-vectors.py          # prints the vectors as JSON
"""

import json

import blake3

ASSIGNMENT_CONTEXT = "ferrum 2026-11 sample assignment v1"
RANDOM_IDENTITY_CONTEXT = "ferrum 2026-11 random data identity v1"
SAMPLES_DIGEST_CONTEXT = "ferrum 2026-11 samples digest v1"
RANDOM_UID = 0xFFFF
# //Alice's sr25519 public key (SS58 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY).
ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
DATASET = bytes(range(32))


class Stream:
    def __init__(self, dataset, netuid, window, uid, hotkey):
        msg = (
            dataset
            + netuid.to_bytes(2, "little")
            + window.to_bytes(8, "little")
            + uid.to_bytes(2, "little")
            + hotkey
        )
        self.hasher = blake3.blake3(msg, derive_key_context=ASSIGNMENT_CONTEXT)
        self.pos = 0

    def next_u64(self):
        b = self.hasher.digest(length=8, seek=self.pos)
        self.pos += 8
        return int.from_bytes(b, "little")

    def below(self, n):
        zone = (1 << 64) - ((1 << 64) % n)
        while True:
            r = self.next_u64()
            if r < zone:
                return r % n


def assign(dataset, netuid, window, uid, hotkey, count, population):
    assert count <= population
    s = Stream(dataset, netuid, window, uid, hotkey)
    chosen, out = set(), []
    for j in range(population - count, population):
        t = s.below(j + 1)
        pick = j if t in chosen else t
        chosen.add(pick)
        out.append(pick)
    for i in range(len(out) - 1, 0, -1):
        k = s.below(i + 1)
        out[i], out[k] = out[k], out[i]
    return out


def random_identity(block_hash):
    return RANDOM_UID, blake3.blake3(block_hash, derive_key_context=RANDOM_IDENTITY_CONTEXT).digest()


def rice_slot(n, k):
    """Rice parameter and slot bits for k kept positions of a block of n (docs/protocol.md 7.1)."""
    best = None
    r = 0
    while r == 0 or (1 << r) <= n:
        worst = k * (1 + r) + ((n - k) >> r)
        if best is None or worst < best[1]:
            best = (r, worst)
        r += 1
    return best


def rice_write(indices, n, k):
    """The index part of a tensor section (docs/protocol.md 8): per block, Rice codes of the gaps
    in a zero-padded slot; bits least significant first."""
    r, slot = rice_slot(n, k)
    bits = []
    for b in range(0, len(indices), k):
        start, nxt = len(bits), 0
        for i in indices[b : b + k]:
            d = i - nxt
            bits += [1] * (d >> r) + [0] + [(d >> j) & 1 for j in range(r)]
            nxt = i + 1
        bits += [0] * (start + slot - len(bits))
    bits += [0] * (-len(bits) % 8)
    return bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))


def main():
    vectors = []
    cases = [
        ("base", 3, 51802, 7, ALICE, 8, 1_000_000),
        ("other uid", 3, 51802, 8, ALICE, 8, 1_000_000),
        ("next window", 3, 51803, 7, ALICE, 8, 1_000_000),
        ("other netuid", 4, 51802, 7, ALICE, 8, 1_000_000),
        ("dense", 3, 51802, 7, ALICE, 16, 20),
    ]
    for name, netuid, window, uid, hotkey, count, pop in cases:
        vectors.append(
            {
                "name": name,
                "netuid": netuid,
                "window": window,
                "uid": uid,
                "hotkey": hotkey.hex(),
                "count": count,
                "population": pop,
                "samples": assign(DATASET, netuid, window, uid, hotkey, count, pop),
            }
        )
    uid, hk = random_identity(bytes([0x11] * 32))
    vectors.append(
        {
            "name": "random data",
            "seed_block_hash": "11" * 32,
            "uid": uid,
            "hotkey": hk.hex(),
            "netuid": 3,
            "window": 51802,
            "count": 8,
            "population": 1_000_000,
            "samples": assign(DATASET, 3, 51802, uid, hk, 8, 1_000_000),
        }
    )
    samples = [4, 8, 15, 16, 23, 42]
    digest = blake3.blake3(
        b"".join(i.to_bytes(8, "little") for i in samples), derive_key_context=SAMPLES_DIGEST_CONTEXT
    ).hexdigest()
    vectors.append({"name": "samples digest", "samples": samples, "digest": digest})
    indices = [0, 5, 6, 63, 1, 2, 3, 9]
    r, slot = rice_slot(64, 4)
    vectors.append(
        {
            "name": "index code",
            "block_len": 64,
            "k": 4,
            "rice": r,
            "slot_bits": slot,
            "indices": indices,
            "bytes": rice_write(indices, 64, 4).hex(),
            "slot_4096_64": rice_slot(4096, 64),
        }
    )
    print(json.dumps({"dataset_id": DATASET.hex(), "vectors": vectors}, indent=1))


if __name__ == "__main__":
    main()
