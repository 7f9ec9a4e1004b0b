#!/usr/bin/env python3
"""Registers a new hotkey on a running `ferrum localnet` with the official Bittensor SDK, unpatched,
as an operator would, and writes the wallet the miner then starts from.

Usage: sdk_register.py READY.json WALLET_DIR
  READY.json: the localnet's ready file (endpoint, netuid)
  WALLET_DIR: where the wallet `sdk` goes (coldkey //Alice, the localnet's funded owner; a new
              hotkey `miner`)
Prints one JSON object: the hotkey's address and the uid the chain gave it.
"""

import json
import sys

import bittensor as bt
from bittensor_wallet import Wallet


def main():
    ready = json.load(open(sys.argv[1]))
    wallet = Wallet(name="sdk", hotkey="miner", path=sys.argv[2])
    wallet.create_coldkey_from_uri("//Alice", use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(n_words=12, use_password=False, overwrite=True, suppress=True)
    subtensor = bt.Subtensor(network=ready["endpoint"])
    netuid = ready["netuid"]
    # burned_register signs and submits an extrinsic: the SDK asks the node for the account's
    # next index (account_nextIndex) first, which chopsticks alone does not answer.
    response = subtensor.burned_register(wallet=wallet, netuid=netuid, wait_for_inclusion=True,
                                         wait_for_finalization=True)
    ok = response.success if hasattr(response, "success") else bool(response)
    if not ok:
        sys.exit(f"burned_register failed: {response}")
    uid = subtensor.get_uid_for_hotkey_on_subnet(wallet.hotkey.ss58_address, netuid)
    print(json.dumps({"hotkey": wallet.hotkey.ss58_address, "uid": uid, "sdk": bt.__version__}))


if __name__ == "__main__":
    main()
