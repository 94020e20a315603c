import {
  keyIdOf,
  ORGANIZATION_NAME_PATTERN,
  PROJECT_NAME_PATTERN,
  verifyDigestSignature,
  type PostedBy,
} from '../../shared/governance.js';
import { ImageResolveError, pinnedReference, resolveImageDigest } from '../../shared/image-registry.js';
import { USER_NAME_PATTERN } from '../../shared/names.js';
import type { SitePolicy, TrustedKey, WhoRule } from './site-policy.js';

/** A signature that counted towards the policy. */
export interface SignatureUse {
  signer: string;
  organization: string;
  keyId: string;
}

export type RunVerdict =
  | { allowed: true; image: string; digest: string | null; signatures: SignatureUse[] }
  | { allowed: false; reason: string; digest: string | null; signatures: SignatureUse[] };

const patterns = {
  researcher: new RegExp(USER_NAME_PATTERN),
  organization: new RegExp(ORGANIZATION_NAME_PATTERN),
  project: new RegExp(PROJECT_NAME_PATTERN),
};

/**
 * Who posted the run, as the registry said it, or null when it said nothing usable. A field that
 * is there but malformed makes the whole answer unusable (fail closed: rules that depend on who
 * asked then refuse the run).
 */
export function validPostedBy(value: unknown): PostedBy | null {
  if (!value || typeof value !== 'object') return null;
  const v = value as Record<string, unknown>;
  if (typeof v.researcher !== 'string' || !patterns.researcher.test(v.researcher)) return null;
  const optional = (x: unknown, p: RegExp): string | null | undefined =>
    x === null || x === undefined ? null : typeof x === 'string' && p.test(x) ? x : undefined;
  const organization = optional(v.organization, patterns.organization);
  const project = optional(v.project, patterns.project);
  if (organization === undefined || project === undefined) return null;
  return { researcher: v.researcher, organization, project };
}

function matches(rule: WhoRule, who: PostedBy | null, image: string): boolean {
  if (rule.image && !rule.image.test(image)) return false;
  if (rule.researcher && rule.researcher !== who?.researcher) return false;
  if (rule.organization && rule.organization !== who?.organization) return false;
  if (rule.project && rule.project !== who?.project) return false;
  return true;
}

function describeRule(rule: WhoRule): string {
  const parts = [
    rule.researcher && `researcher ${rule.researcher}`,
    rule.organization && `organization ${rule.organization}`,
    rule.project && `project ${rule.project}`,
    rule.image && `image ${rule.image.source.slice(4, -2)}`,
  ].filter(Boolean);
  return parts.join(', ');
}

/** Deny rules first, then (if there are any) the allow rules. Null when allowed, else the reason. */
export function checkWho(policy: SitePolicy, who: PostedBy | null, image: string): string | null {
  const { allow, deny } = policy.run;
  const namesWho = [...allow, ...deny].some((r) => r.researcher || r.organization || r.project);
  if (namesWho && !who) return 'the registry did not say who posted this task, and the site policy depends on it';
  for (const rule of deny)
    if (matches(rule, who, image))
      return `denied by site policy (${rule.field}: ${describeRule(rule)})${rule.reason ? `: ${rule.reason}` : ''}`;
  if (allow.length > 0 && !allow.some((r) => matches(r, who, image)))
    return `no allow rule of the site policy matches (researcher ${who?.researcher ?? '?'}, organization ${who?.organization ?? 'none'}, project ${who?.project ?? 'none'}, image ${image})`;
  return null;
}

/**
 * Counts the valid signatures of `digest` by keys the site trusts. The registry's list is
 * untrusted: each entry's key id is recomputed from its key and each signature is verified.
 */
export function countSignatures(
  trusted: readonly TrustedKey[],
  digest: string,
  stored: readonly unknown[],
): { valid: SignatureUse[]; untrusted: number; invalid: number } {
  const byId = new Map(trusted.map((k) => [k.keyId, k]));
  const valid = new Map<string, SignatureUse>();
  let untrusted = 0;
  let invalid = 0;
  for (const entry of stored.slice(0, 1000)) {
    if (!entry || typeof entry !== 'object') continue;
    const s = entry as Record<string, unknown>;
    if (typeof s.publicKey !== 'string' || typeof s.signature !== 'string') continue;
    let keyId: string;
    try {
      keyId = keyIdOf(s.publicKey);
    } catch {
      invalid++;
      continue;
    }
    const key = byId.get(keyId);
    if (!key) {
      untrusted++;
      continue;
    }
    // The site's own copy of the key is what counts, not the registry's.
    if (!verifyDigestSignature(key.publicKey, digest, s.signature)) {
      invalid++;
      continue;
    }
    valid.set(keyId, { signer: key.name, organization: key.organization, keyId });
  }
  return { valid: [...valid.values()], untrusted, invalid };
}

/**
 * Decides before anything is pulled: who may ask, then (when the policy needs signatures) resolves
 * the tag to its digest at the image registry, verifies the signatures of that digest and answers
 * the pinned reference `repository@sha256:…`, so the image pulled and run is exactly the one
 * verified, whatever the tag points at later.
 */
export async function checkRun(
  policy: SitePolicy,
  image: string,
  who: PostedBy | null,
  signaturesOf: (digest: string) => Promise<unknown[]>,
): Promise<RunVerdict> {
  const refused = checkWho(policy, who, image);
  if (refused) return { allowed: false, reason: refused, digest: null, signatures: [] };
  const { requiredSignatures, distinctOrganizations, trustedKeys } = policy.run;
  if (requiredSignatures === 0) return { allowed: true, image, digest: null, signatures: [] };
  let resolved;
  try {
    resolved = await resolveImageDigest(image);
  } catch (e) {
    if (!(e instanceof ImageResolveError)) throw e;
    return {
      allowed: false,
      reason: `cannot verify the image's signatures: ${e.message}`,
      digest: null,
      signatures: [],
    };
  }
  const { digest, ref } = resolved;
  const counted = countSignatures(trustedKeys, digest, await signaturesOf(digest));
  const orgs = new Set(counted.valid.map((s) => s.organization));
  const enoughKeys = counted.valid.length >= requiredSignatures;
  const enoughOrgs = orgs.size >= distinctOrganizations;
  if (enoughKeys && enoughOrgs)
    return { allowed: true, image: pinnedReference(ref, digest), digest, signatures: counted.valid };
  const have = counted.valid.length
    ? `${counted.valid.length} valid signature(s) by trusted keys (${counted.valid.map((s) => `${s.signer} of ${s.organization}`).join(', ')})`
    : 'no valid signature by a trusted key';
  const want = `${requiredSignatures} signature(s)${distinctOrganizations > 0 ? ` from ${distinctOrganizations} organization(s)` : ''}`;
  const also = [
    counted.untrusted && `${counted.untrusted} by keys the site does not trust`,
    counted.invalid && `${counted.invalid} that do not verify`,
  ].filter(Boolean);
  return {
    allowed: false,
    reason: `image digest ${digest} has ${have}; the site requires ${want}${also.length ? ` (also ${also.join(', ')})` : ''}`,
    digest,
    signatures: counted.valid,
  };
}
