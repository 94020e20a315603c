/** `pht image …`: reviewers' keys and signatures of image digests. */
import fs from 'node:fs';
import {
  generateReviewerKeyPair,
  keyIdOf,
  signDigest,
  SIGNER_NAME_PATTERN,
  verifyDigestSignature,
} from '../../shared/governance.js';
import { ImageResolveError, resolveImageDigest } from '../../shared/image-registry.js';
import type { Command, CommandContext } from './commands.js';
import { EXIT, UsageError } from './io.js';

async function digestOf(image: string): Promise<string> {
  try {
    return (await resolveImageDigest(image)).digest;
  } catch (e) {
    if (e instanceof ImageResolveError) throw new UsageError(e.message);
    throw e;
  }
}

function flag(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.flags[name];
  return typeof v === 'string' ? v : undefined;
}

async function keygen(ctx: CommandContext): Promise<number> {
  const out = flag(ctx, 'out');
  if (!out) throw new UsageError('image keygen needs --out FILE (the private key is written there)');
  const pair = generateReviewerKeyPair();
  try {
    // wx: never overwrite a key; 0600: the private key is the reviewer's alone.
    fs.writeFileSync(out, pair.privateKeyPem, { flag: 'wx', mode: 0o600 });
  } catch (e) {
    throw new UsageError(`cannot write ${out}: ${(e as Error).message}`);
  }
  const keyId = keyIdOf(pair.publicKey);
  ctx.io.stdout.write(
    ctx.json
      ? JSON.stringify({ privateKeyFile: out, publicKey: pair.publicKey, keyId }) + '\n'
      : `private key written to ${out} (keep it secret)\npublic key: ${pair.publicKey}\nkey id: ${keyId}\n` +
          `Sites that trust you list the public key in their config under policy.run.trustedKeys.\n`,
  );
  return EXIT.ok;
}

async function sign(ctx: CommandContext): Promise<number> {
  const image = ctx.args[0]!;
  const keyFile = flag(ctx, 'key');
  if (!keyFile) throw new UsageError('image sign needs --key FILE (from "pht image keygen")');
  let pem: string;
  try {
    pem = fs.readFileSync(keyFile, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the key ${keyFile}: ${(e as Error).message}`);
  }
  const signer = flag(ctx, 'signer') ?? (await ctx.client.me()).name;
  if (!new RegExp(SIGNER_NAME_PATTERN).test(signer)) throw new UsageError(`invalid --signer "${signer.slice(0, 80)}"`);
  const digest = await digestOf(image);
  let signed: { signature: string; publicKey: string };
  try {
    signed = signDigest(pem, digest);
  } catch (e) {
    throw new UsageError(`cannot sign with ${keyFile}: ${(e as Error).message}`);
  }
  await ctx.client.postImageSignature({ digest, publicKey: signed.publicKey, signature: signed.signature, signer });
  const keyId = keyIdOf(signed.publicKey);
  ctx.io.stdout.write(
    ctx.json
      ? JSON.stringify({ image, digest, signer, keyId }) + '\n'
      : `signed ${image}\n  digest ${digest}\n  as ${signer}, key id ${keyId}\n`,
  );
  return EXIT.ok;
}

async function signatures(ctx: CommandContext): Promise<number> {
  const image = ctx.args[0]!;
  const digest = await digestOf(image);
  const list = (await ctx.client.listImageSignatures(digest)).map((s) => ({
    ...s,
    // Checked here too: the registry stores signatures but is not trusted for them.
    valid: verifyDigestSignature(s.publicKey, digest, s.signature) && keyIdOf(s.publicKey) === s.keyId,
  }));
  if (ctx.json) {
    ctx.io.stdout.write(JSON.stringify({ image, digest, signatures: list }) + '\n');
    return EXIT.ok;
  }
  ctx.io.stdout.write(`${image}\n  digest ${digest}\n`);
  if (list.length === 0) ctx.io.stdout.write('  no signatures\n');
  for (const s of list)
    ctx.io.stdout.write(
      `  ${s.valid ? 'valid  ' : 'INVALID'} ${s.signer.padEnd(20)} key ${s.keyId.slice(0, 16)}…  ${s.createdAt}\n`,
    );
  return EXIT.ok;
}

export const IMAGE_COMMANDS: readonly Command[] = [
  {
    name: 'image keygen',
    synopsis: '--out FILE',
    summary: "make a reviewer's Ed25519 key pair: the private key goes to FILE, the public key is printed",
    args: [],
    valueFlags: ['out'],
    booleanFlags: [],
    offline: true,
    run: keygen,
  },
  {
    name: 'image sign',
    synopsis: 'IMAGE --key FILE [--signer NAME]',
    summary: "sign the image's current digest (asked of its registry) and store the signature at the PHT registry",
    args: ['IMAGE'],
    valueFlags: ['key', 'signer'],
    booleanFlags: [],
    run: sign,
  },
  {
    name: 'image signatures',
    synopsis: 'IMAGE',
    summary: "the signatures stored for the image's current digest, each checked",
    args: ['IMAGE'],
    valueFlags: [],
    booleanFlags: [],
    run: signatures,
  },
];
