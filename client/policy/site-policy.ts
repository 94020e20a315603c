import { ConfigError } from '../../shared/errors.js';
import { keyIdOf, parsePublicKey } from '../../shared/governance.js';

/** An allow or deny rule of the site's policy; every field it names must match. */
export interface WhoRule {
  researcher: string | null;
  organization: string | null;
  project: string | null;
  image: RegExp | null;
  reason: string | null;
  /** Where it sits in the config, for messages: "policy.run.deny[0]". */
  field: string;
}

export interface TrustedKey {
  name: string;
  organization: string;
  publicKey: string;
  keyId: string;
}

export interface OutputRules {
  maxBytes?: number;
  maxFiles?: number;
  allowedTypes?: string[];
  minCellCount?: number;
  smallCells?: 'suppress' | 'hold';
  review?: 'none' | 'manual';
  logs?: 'send' | 'withhold';
  logBytes?: number;
  progress?: 'send' | 'withhold';
}

export interface SitePolicy {
  run: {
    trustedKeys: TrustedKey[];
    requiredSignatures: number;
    distinctOrganizations: number;
    allow: WhoRule[];
    deny: WhoRule[];
  };
  output: {
    default: OutputRules;
    byResearcher: Record<string, OutputRules>;
    byImage: (OutputRules & { image: RegExp })[];
  };
}

/** The policy of a site with none configured: today's behaviour. */
export const NO_POLICY: SitePolicy = {
  run: { trustedKeys: [], requiredSignatures: 0, distinctOrganizations: 0, allow: [], deny: [] },
  output: { default: {}, byResearcher: {}, byImage: [] },
};

function fail(file: string | null, field: string, message: string): never {
  throw new ConfigError(`config${file ? ` file ${file}` : ''}: ${field}: ${message}`, file);
}

/** A whole-reference regular expression, as in allowedImages. */
function imagePattern(source: string, file: string | null, field: string): RegExp {
  try {
    return new RegExp(`^(?:${source})$`);
  } catch (e) {
    return fail(file, field, `not a valid regular expression (${(e as Error).message})`);
  }
}

function stripImage<T extends object>(rules: T): Omit<T, 'image'> {
  const { image: _image, ...rest } = rules as T & { image?: unknown };
  for (const k of Object.keys(rest)) if (k.startsWith('//')) delete (rest as Record<string, unknown>)[k];
  return rest;
}

/**
 * Compiles the schema-validated `policy` field. Also checks what the schema cannot: regular
 * expressions, that each public key is an Ed25519 key, that no key is listed twice, and that the
 * signature requirements can be met by the keys listed.
 */
export function compileSitePolicy(raw: Record<string, any> | undefined, file: string | null): SitePolicy {
  if (!raw) return NO_POLICY;
  const run = raw.run ?? {};
  const rule = (r: Record<string, any>, field: string): WhoRule => {
    if (!r.researcher && !r.organization && !r.project && !r.image)
      fail(file, field, 'a rule needs at least one of researcher, organization, project, image');
    return {
      researcher: r.researcher ?? null,
      organization: r.organization ?? null,
      project: r.project ?? null,
      image: r.image ? imagePattern(r.image, file, `${field}.image`) : null,
      reason: r.reason ?? null,
      field,
    };
  };
  const trustedKeys: TrustedKey[] = (run.trustedKeys ?? []).map((k: Record<string, string>, i: number) => {
    const field = `policy.run.trustedKeys[${i}].publicKey`;
    try {
      parsePublicKey(k.publicKey!);
    } catch (e) {
      fail(file, field, (e as Error).message);
    }
    return { name: k.name!, organization: k.organization!, publicKey: k.publicKey!, keyId: keyIdOf(k.publicKey!) };
  });
  const ids = new Set<string>();
  trustedKeys.forEach((k, i) => {
    if (ids.has(k.keyId)) fail(file, `policy.run.trustedKeys[${i}]`, 'this public key is listed twice');
    ids.add(k.keyId);
  });
  const required = run.requiredSignatures ?? 0;
  const orgs = run.distinctOrganizations ?? 0;
  if (required > trustedKeys.length)
    fail(
      file,
      'policy.run.requiredSignatures',
      `needs ${required} signatures but only ${trustedKeys.length} keys are trusted`,
    );
  if (orgs > 0 && required === 0)
    fail(file, 'policy.run.distinctOrganizations', 'needs requiredSignatures of at least 1');
  if (orgs > new Set(trustedKeys.map((k) => k.organization)).size)
    fail(file, 'policy.run.distinctOrganizations', `needs ${orgs} organizations but the trusted keys come from fewer`);
  const output = raw.output ?? {};
  return {
    run: {
      trustedKeys,
      requiredSignatures: required,
      distinctOrganizations: orgs,
      allow: (run.allow ?? []).map((r: Record<string, any>, i: number) => rule(r, `policy.run.allow[${i}]`)),
      deny: (run.deny ?? []).map((r: Record<string, any>, i: number) => rule(r, `policy.run.deny[${i}]`)),
    },
    output: {
      default: stripImage(output.default ?? {}),
      byResearcher: Object.fromEntries(
        Object.entries(output.byResearcher ?? {}).map(([k, v]) => [k, stripImage(v as OutputRules)]),
      ),
      byImage: (output.byImage ?? []).map((r: Record<string, any>, i: number) => ({
        ...stripImage(r),
        image: imagePattern(r.image, file, `policy.output.byImage[${i}].image`),
      })),
    },
  };
}

/** The output rules for a run: default, then its researcher's, then the first matching image entry. */
export function outputRulesFor(policy: SitePolicy, image: string, researcher: string | null): OutputRules {
  const byImage = policy.output.byImage.find((r) => r.image.test(image));
  return {
    ...policy.output.default,
    ...(researcher ? policy.output.byResearcher[researcher] : undefined),
    ...(byImage ? stripImage(byImage) : undefined),
  };
}
