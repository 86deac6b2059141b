#!/usr/bin/env node
// OpenPGP.js 6 as an interop peer for daemon/openpgp's token tests
// (daemon/openpgp/tests/openpgpjs.rs, run by scripts/test-openpgp).
//
// GnuPG 2.2 and Debian's sq 0.27 do not do RFC 9580 v6 keys or SEIPD v2;
// OpenPGP.js 6 does, so it is the independent peer for those. The Rust test
// drives this script through files, stdin and stdout; nothing here is used
// by the gateway itself.
//
//   version                                  prints the OpenPGP.js version
//   genkey [--v6] [--aead] --curve curve25519|curve25519legacy|nistp256
//          --uid 'Name <addr>' --out-key K --out-cert C
//        --v6 makes an RFC 9580 v6 key and advertises SEIPD v2 (AEAD);
//        without it a v4 key, advertising SEIPD v2 only with --aead.
//   encrypt --to CERT [--to CERT…] [--sign-key KEY]   stdin → armored message
//   decrypt --key KEY [--verify-cert CERT]            armored stdin → plaintext
//        with --verify-cert: exits non-zero unless the message carries a
//        valid signature by that certificate.
//   sign-detached --key KEY [--text]                  stdin → armored signature
//   verify-detached --cert CERT --sig SIG             data on stdin
//
// Data is taken as binary (no line-ending changes) unless --text is given.
// Keys and certificates are armored files. Errors: message on stderr, exit 1.

import { readFileSync, writeFileSync } from 'node:fs';
import * as openpgp from 'openpgp';

function parseArgs(argv) {
  const opts = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      opts._.push(a);
    } else if (['--v6', '--aead', '--text'].includes(a)) {
      opts[a.slice(2)] = true;
    } else if (i + 1 < argv.length) {
      const k = a.slice(2);
      const v = argv[++i];
      opts[k] = k === 'to' ? [...(opts[k] || []), v] : v;
    } else {
      throw new Error(`missing value for ${a}`);
    }
  }
  return opts;
}

function need(opts, name) {
  if (opts[name] === undefined) throw new Error(`--${name} is required`);
  return opts[name];
}

async function stdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return new Uint8Array(Buffer.concat(chunks));
}

const text = (path) => readFileSync(path, 'utf8');
const readCert = (path) => openpgp.readKey({ armoredKey: text(path) });
const readPrivate = (path) => openpgp.readPrivateKey({ armoredKey: text(path) });
const out = (data) => process.stdout.write(data);

function parseUid(uid) {
  const m = /^(.*?)\s*<([^>]+)>$/.exec(uid);
  return m ? { name: m[1], email: m[2] } : { email: uid };
}

async function message(opts) {
  const data = await stdin();
  return opts.text
    ? openpgp.createMessage({ text: new TextDecoder().decode(data) })
    : openpgp.createMessage({ binary: data });
}

const commands = {
  async version() {
    out(`${openpgp.config.versionString}\n`);
  },

  async genkey(opts) {
    const curve = need(opts, 'curve');
    const kinds = {
      curve25519: { type: 'curve25519' }, // Ed25519 + X25519 (RFC 9580)
      curve25519legacy: { type: 'ecc', curve: 'curve25519Legacy' }, // EdDSA + ECDH (v4 only)
      nistp256: { type: 'ecc', curve: 'nistP256' },
    };
    if (!kinds[curve]) throw new Error(`unknown curve ${curve}`);
    const { privateKey, publicKey } = await openpgp.generateKey({
      ...kinds[curve],
      userIDs: [parseUid(need(opts, 'uid'))],
      format: 'armored',
      config: { v6Keys: !!opts.v6, aeadProtect: !!(opts.v6 || opts.aead) },
    });
    writeFileSync(need(opts, 'out-key'), privateKey);
    writeFileSync(need(opts, 'out-cert'), publicKey);
  },

  async encrypt(opts) {
    const encryptionKeys = await Promise.all(need(opts, 'to').map(readCert));
    const signingKeys = opts['sign-key'] ? [await readPrivate(opts['sign-key'])] : undefined;
    out(await openpgp.encrypt({ message: await message(opts), encryptionKeys, signingKeys }));
  },

  async decrypt(opts) {
    const decryptionKeys = [await readPrivate(need(opts, 'key'))];
    const verify = opts['verify-cert'];
    const { data } = await openpgp.decrypt({
      message: await openpgp.readMessage({ armoredMessage: new TextDecoder().decode(await stdin()) }),
      decryptionKeys,
      verificationKeys: verify ? [await readCert(verify)] : undefined,
      // Throws unless a signature by verificationKeys checks out.
      expectSigned: !!verify,
      format: 'binary',
    });
    out(data);
  },

  async 'sign-detached'(opts) {
    const signingKeys = [await readPrivate(need(opts, 'key'))];
    out(await openpgp.sign({ message: await message(opts), signingKeys, detached: true }));
  },

  async 'verify-detached'(opts) {
    const { signatures } = await openpgp.verify({
      message: await message(opts),
      signature: await openpgp.readSignature({ armoredSignature: text(need(opts, 'sig')) }),
      verificationKeys: [await readCert(need(opts, 'cert'))],
      expectSigned: true, // throws unless a signature verifies
    });
    out(`good signature by ${signatures[0].keyID.toHex()}\n`);
  },
};

try {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!commands[cmd]) throw new Error(`usage: peer.mjs ${Object.keys(commands).join('|')} …`);
  await commands[cmd](parseArgs(rest));
} catch (e) {
  process.stderr.write(`peer.mjs: ${e && e.message ? e.message : e}\n`);
  process.exitCode = 1;
}
