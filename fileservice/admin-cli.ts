import { createKeyFiles, keyFilePaths, readPublicKeyFile, rotateKeyFiles } from '../shared/crypto/index.js';
import { parseDurationMs } from '../shared/duration.js';
import { SITE_NAME_PATTERN } from '../shared/names.js';
import type { FileServiceConfig } from './config.js';
import { UsageError } from './errors.js';
import { FileServiceStore, type PrincipalKind } from './store.js';

export const ADMIN_USAGE = `Admin commands (work whether or not the server runs; --data-dir DIR; --json for scripts):
  node fileservice create-sender NAME          a site that uploads; prints its API key once
  node fileservice create-reader NAME          a TTP process that reads; prints its token once
  node fileservice list                        list senders and readers
  node fileservice revoke sender|reader NAME   the key stops working at once
  node fileservice enable sender|reader NAME
  node fileservice rotate-key sender|reader NAME
  node fileservice keys create [--key-file F]  the TTP's key pair (private 0600; default <data-dir>/keys/ttp.key)
  node fileservice keys rotate [--grace 168h]  new key pair; the old one still opens files for the grace period
  node fileservice keys show                   the public key's fingerprint`;

type Print = (text: string) => void;
const NAME = new RegExp(SITE_NAME_PATTERN);

export function runAdminCommand(
  command: string,
  args: string[],
  flags: Readonly<Record<string, unknown>>,
  config: FileServiceConfig,
  print: Print,
): void {
  const asJson = flags.json === true;
  if (command === 'keys') {
    runKeysCommand(args[0], flags, config, print);
    return;
  }
  const store = new FileServiceStore(config.dataDir);
  try {
    switch (command) {
      case 'create-sender':
      case 'create-reader': {
        const kind: PrincipalKind = command === 'create-sender' ? 'sender' : 'reader';
        const name = requireName(args[0], kind);
        let secret: string;
        try {
          secret = store.createPrincipal(kind, name);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
        const field = kind === 'sender' ? 'apiKey' : 'token';
        print(
          asJson
            ? JSON.stringify({ name, [field]: secret })
            : `${kind} "${name}" created\n${kind === 'sender' ? 'api key' : 'token'} (shown once): ${secret}`,
        );
        return;
      }
      case 'list': {
        const principals = store.listPrincipals();
        if (asJson) print(JSON.stringify(principals.map(({ id: _id, ...p }) => p)));
        else
          for (const p of principals)
            print(`${p.kind.padEnd(6)} ${p.name.padEnd(24)} ${p.enabled ? 'enabled' : 'disabled'}`);
        return;
      }
      case 'revoke':
      case 'enable': {
        const kind = requireKind(args[0]);
        const name = requireName(args[1], kind);
        if (!store.setEnabled(kind, name, command === 'enable')) throw new UsageError(`no ${kind} named "${name}"`);
        print(
          asJson
            ? JSON.stringify({ kind, name, enabled: command === 'enable' })
            : `${kind} "${name}" ${command === 'enable' ? 'enabled' : 'disabled'}`,
        );
        return;
      }
      case 'rotate-key': {
        const kind = requireKind(args[0]);
        const name = requireName(args[1], kind);
        const secret = store.rotateSecret(kind, name);
        if (!secret) throw new UsageError(`no ${kind} named "${name}"`);
        print(
          asJson
            ? JSON.stringify({ kind, name, [kind === 'sender' ? 'apiKey' : 'token']: secret })
            : `new key for ${kind} "${name}" (shown once): ${secret}`,
        );
        return;
      }
      default:
        throw new UsageError(`unknown command "${command}"\n\n${ADMIN_USAGE}`);
    }
  } finally {
    store.close();
  }
}

function runKeysCommand(
  sub: string | undefined,
  flags: Readonly<Record<string, unknown>>,
  config: FileServiceConfig,
  print: Print,
): void {
  const asJson = flags.json === true;
  const paths = keyFilePaths(config.keyFile);
  switch (sub) {
    case 'create': {
      const key = createKeyFiles(paths.privateFile);
      print(
        asJson
          ? JSON.stringify({
              fingerprint: key.publicKey.fingerprint,
              privateKeyFile: paths.privateFile,
              publicKeyFile: paths.publicFile,
            })
          : `key pair created\nprivate key: ${paths.privateFile} (mode 0600; never leaves this machine)\npublic key:  ${paths.publicFile} (register it: node master add-ttp NAME --url URL --public-key ${paths.publicFile})\nfingerprint: ${key.publicKey.fingerprint}`,
      );
      return;
    }
    case 'rotate': {
      const graceText = typeof flags.grace === 'string' ? flags.grace : '168h';
      let graceMs: number;
      try {
        graceMs = parseDurationMs(graceText);
      } catch {
        throw new UsageError(`--grace must be a duration like 168h or 30m, got "${graceText}"`);
      }
      const { ring, statement } = rotateKeyFiles(paths.privateFile, graceMs);
      const until = ring.previous[0]!.readableUntil;
      print(
        asJson
          ? JSON.stringify({
              fingerprint: ring.current.publicKey.fingerprint,
              previous: statement.old,
              readableUntil: until,
            })
          : `key rotated\nnew fingerprint: ${ring.current.publicKey.fingerprint}\nfiles sealed to the old key stay readable until ${until}; the rotation is signed by the old key and published at /api/v1/public-key`,
      );
      return;
    }
    case 'show': {
      const key = readPublicKeyFile(paths.publicFile);
      print(
        asJson ? JSON.stringify({ fingerprint: key.fingerprint, publicKeyFile: paths.publicFile }) : key.fingerprint,
      );
      return;
    }
    default:
      throw new UsageError('keys takes "create", "rotate" or "show"');
  }
}

function requireName(value: string | undefined, kind: PrincipalKind): string {
  if (!value) throw new UsageError(`missing ${kind} name`);
  if (!NAME.test(value))
    throw new UsageError(`invalid ${kind} name "${value}" (lowercase letters, digits, "-" and "_")`);
  return value;
}

function requireKind(value: string | undefined): PrincipalKind {
  if (value !== 'sender' && value !== 'reader') throw new UsageError('expected "sender" or "reader" before the name');
  return value;
}
