import { readPublicKeyFile, publicKeyToJson } from '../shared/crypto/index.js';
import { KEY_KINDS, type KeyKind } from '../shared/key-schemas.js';
import { SITE_NAME_PATTERN, USER_NAME_PATTERN } from '../shared/names.js';
import { openPublicKeys, openStore, type StoreLocation } from './store/open-store.js';
import { RegistryError } from './errors.js';

export const KEY_ADMIN_USAGE = `  node master add-ttp NAME --url URL --public-key FILE
                                                  register a trusted third party's file service and public key
  node master revoke-key site|user|ttp NAME       stop handing out a public key (new sealed tasks to it fail)`;

export const KEY_ADMIN_COMMANDS = ['add-ttp', 'revoke-key'];

/** Key commands of `node master`; throws `usage(message)` for a command line it cannot act on. */
export async function runKeyAdminCommand(
  command: string,
  args: string[],
  flags: Readonly<Record<string, unknown>>,
  location: StoreLocation,
  print: (text: string) => void,
  usage: (message: string) => Error,
): Promise<void> {
  const asJson = flags.json === true;
  // Opening the registry's store first applies its migrations (the keys table among them).
  const store = await openStore(location);
  const keys = openPublicKeys(store, location);
  try {
    if (command === 'add-ttp') {
      const name = args[0];
      if (!name || !new RegExp(SITE_NAME_PATTERN).test(name))
        throw usage('add-ttp needs a TTP name (lowercase letters, digits, "-" and "_")');
      const url = flags.url;
      if (typeof url !== 'string' || !/^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(url))
        throw usage("add-ttp needs --url http(s)://host:port of the TTP's file service");
      const file = flags['public-key'];
      if (typeof file !== 'string')
        throw usage('add-ttp needs --public-key FILE (written by "node fileservice keys create")');
      const key = readPublicKeyFile(file);
      try {
        await keys.register('ttp', name, publicKeyToJson(key), undefined, url.replace(/\/+$/, ''));
      } catch (e) {
        if (e instanceof RegistryError) throw usage(e.message);
        throw e;
      }
      print(
        asJson
          ? JSON.stringify({ name, url: url.replace(/\/+$/, ''), fingerprint: key.fingerprint })
          : `ttp "${name}" registered at ${url}\nfingerprint: ${key.fingerprint}`,
      );
      return;
    }
    const kind = args[0] as KeyKind;
    const name = args[1];
    if (!KEY_KINDS.includes(kind)) throw usage('revoke-key takes site, user or ttp before the name');
    if (!name || !new RegExp(kind === 'user' ? USER_NAME_PATTERN : SITE_NAME_PATTERN).test(name))
      throw usage(`missing or invalid ${kind} name`);
    if (!(await keys.revoke(kind, name)))
      throw usage(`${kind} "${name}" has no registered key (or it is already revoked)`);
    print(asJson ? JSON.stringify({ kind, name, revoked: true }) : `public key of ${kind} "${name}" revoked`);
  } finally {
    await keys.close();
    await store.close();
  }
}
