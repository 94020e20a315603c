import { isSealedConfig } from '../shared/crypto/index.js';
import { ERROR_CODES } from '../shared/error-codes.js';
import { RegistryError } from './errors.js';
import type { PublicKeys } from './public-keys.js';

/**
 * Refuses a sealed task the registry can already tell is undeliverable: a target site without an
 * active public key could never open its config. The SDK and CLI check this before posting; the
 * registry checks again for every other client. It cannot check more (the envelope is opaque to
 * it): each site still checks that the config was sealed for it and signed by the owner.
 */
export async function refuseUnsealableTask(keys: PublicKeys, config: unknown, sites: string[] | null): Promise<void> {
  if (!isSealedConfig(config)) return;
  if (sites === null)
    throw new RegistryError(
      400,
      ERROR_CODES.validation,
      'a sealed task must list its sites: its config is sealed for the keys of those sites only',
    );
  const keyless = await keys.withoutActiveKey('site', sites);
  if (keyless.length > 0)
    throw new RegistryError(
      422,
      ERROR_CODES.siteWithoutKey,
      `a sealed task needs an active public key at every site; none at ${keyless.map((s) => `"${s}"`).join(', ')}`,
      { sites: keyless },
    );
}
