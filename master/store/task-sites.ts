import { ERROR_CODES } from '../../shared/error-codes.js';
import { RegistryError } from '../errors.js';

/** A site as a task's creation needs it: its id, and whether it may receive runs. */
export interface SiteForTask {
  id: number;
  enabled: boolean;
}

/**
 * The sites a task names, in its order, or a 422 `unknown_site` naming every unknown and every
 * disabled one at once (so a researcher fixes the list in one go). Both stores look the sites up
 * their own way and share this rule.
 */
export function enabledSitesOrRefuse(
  names: readonly string[],
  lookUp: (name: string) => SiteForTask | undefined,
): { id: number; name: string }[] {
  const unknown: string[] = [];
  const disabled: string[] = [];
  const named: { id: number; name: string }[] = [];
  for (const name of names) {
    const site = lookUp(name);
    if (!site) unknown.push(name);
    else if (!site.enabled) disabled.push(name);
    else named.push({ id: site.id, name });
  }
  if (unknown.length || disabled.length) {
    const parts = [];
    if (unknown.length) parts.push(`unknown site(s): ${unknown.join(', ')}`);
    if (disabled.length) parts.push(`disabled site(s): ${disabled.join(', ')}`);
    throw new RegistryError(422, ERROR_CODES.unknownSite, parts.join('; '), { unknown, disabled });
  }
  return named;
}
