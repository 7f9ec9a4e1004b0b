// Independent encoder for chain/tests/finney.rs: builds the same transactions as Ferrum with
// polkadot.js (@polkadot/types, pinned by chain/chopsticks/package-lock.json), which reads the
// V16 metadata and its type registry itself and knows nothing of subxt.
//
//   node polkadotjs.cjs METADATA.scale REQUEST.json  > RESULT.json
//
// REQUEST: { genesis_hash, nonce, tip, era: null | { period, current, block_hash },
//            account, signature, calls: [{ name, pallet, call, args: [...] }],
//            storage: [{ pallet, item, keys: [...] }] }
// RESULT:  { spec_version, transaction_version, extensions: [...],
//            calls: [{ name, call_data, signer_payload, extrinsic, unsigned, signature_valid }],
//            storage: [hex key, ...] }
// signer_payload is what is signed: the payload, or its blake2-256 when over 256 bytes.
// `signature_valid` says whether `signature` verifies for `account` over the signer payload
// (hashed when over 256 bytes, as a signer does), which holds when Ferrum signed it for real.
const fs = require('fs');
const { TypeRegistry, Metadata, decorateExtrinsics, decorateStorage } = require('@polkadot/types');
const { signatureVerify, blake2AsU8a } = require('@polkadot/util-crypto');
const { u8aToHex, hexToU8a, compactStripLength } = require('@polkadot/util');

const [metadataPath, requestPath] = process.argv.slice(2);
const req = JSON.parse(fs.readFileSync(requestPath, 'utf8'));
const registry = new TypeRegistry();
// Unknown extensions with empty types are expected (subtensor's own); keep stdout clean.
const warn = console.warn; console.warn = () => {};
const metadata = new Metadata(registry, new Uint8Array(fs.readFileSync(metadataPath)));
registry.setMetadata(metadata);
console.warn = warn;

const latest = metadata.asLatest;
const system = latest.pallets.find((p) => p.name.toString() === 'System');
const versionConst = system.constants.find((c) => c.name.toString() === 'Version');
const version = registry.createType('RuntimeVersion', versionConst.value);
const tx = decorateExtrinsics(registry, latest, metadata.version);

const lowerFirst = (s) => s.charAt(0).toLowerCase() + s.slice(1);
const camel = (s) => s.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

function buildCall(c) {
  if (c.pallet === 'Sudo' && c.call === 'sudo') {
    const [inner] = c.args;
    return tx.sudo.sudo(buildCall(inner));
  }
  return tx[lowerFirst(c.pallet)][camel(c.call)](...c.args);
}

const era = req.era
  ? registry.createType('ExtrinsicEra', { current: req.era.current, period: req.era.period })
  : registry.createType('ExtrinsicEra', '0x00');
const out = {
  spec_version: version.specVersion.toNumber(),
  transaction_version: version.transactionVersion.toNumber(),
  extensions: registry.signedExtensions,
  calls: [],
  storage: [],
};
const query = decorateStorage(registry, latest, metadata.version);
for (const q of req.storage || []) {
  const entry = query[lowerFirst(q.pallet)][lowerFirst(q.item)];
  const key = entry(...q.keys);
  // The decorated entry returns the key length-prefixed, as the RPC takes it.
  out.storage.push(u8aToHex(compactStripLength(key)[1]));
}
for (const c of req.calls) {
  const method = buildCall(c);
  const payload = registry.createType(
    'ExtrinsicPayload',
    {
      method: method.toHex(),
      era,
      nonce: req.nonce,
      tip: req.tip,
      genesisHash: req.genesis_hash,
      blockHash: req.era ? req.era.block_hash : req.genesis_hash,
      specVersion: version.specVersion,
      transactionVersion: version.transactionVersion,
      mode: 0,
      version: 4,
    },
    { version: 4 },
  );
  const payloadBytes = payload.toU8a({ method: true });
  const toSign = payloadBytes.length > 256 ? blake2AsU8a(payloadBytes) : payloadBytes;
  const unsigned = registry.createType('Extrinsic', method, { version: 4 }).toHex();
  const ext = registry.createType('Extrinsic', method, { version: 4 });
  const sig = hexToU8a(req.signature);
  ext.addSignature(req.account, registry.createType('MultiSignature', { Sr25519: sig }), payload.toHex());
  out.calls.push({
    name: c.name,
    call_data: method.toHex(),
    signer_payload: u8aToHex(toSign),
    extrinsic: ext.toHex(),
    unsigned,
    signature_valid: signatureVerify(toSign, sig, req.account).isValid,
  });
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
