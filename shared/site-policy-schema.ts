/**
 * JSON schema of the `policy` field of a site client's config: what may run at the site and what
 * may leave it. Everything is off by default (an absent `policy` keeps today's behaviour); the
 * client compiles it in client/policy/site-policy.ts, which also checks what a schema cannot
 * (regular expressions, public keys) with errors that name the field.
 */
import { ORGANIZATION_NAME_PATTERN, PROJECT_NAME_PATTERN } from './governance.js';
import { USER_NAME_PATTERN } from './names.js';

const reason = { type: 'string', minLength: 1, maxLength: 500 } as const;

/** One allow or deny rule: every field it names must match (image: a regular expression). */
const whoRule = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    researcher: { type: 'string', pattern: USER_NAME_PATTERN },
    organization: { type: 'string', pattern: ORGANIZATION_NAME_PATTERN },
    project: { type: 'string', pattern: PROJECT_NAME_PATTERN },
    image: { type: 'string', minLength: 1, maxLength: 1000 },
    reason,
  },
} as const;

const outputRuleProperties = {
  /** Most bytes and files a run may send back (on top of limits.outputBytes/outputFiles). */
  maxBytes: { type: 'integer', minimum: 0 },
  maxFiles: { type: 'integer', minimum: 0 },
  /** File name extensions that may leave, lowercase without the dot: ["csv", "json"]. */
  allowedTypes: { type: 'array', uniqueItems: true, items: { type: 'string', pattern: '^[a-z0-9]{1,16}$' } },
  /** Counts in CSV/JSON count tables below this (and above 0) are small cells. */
  minCellCount: { type: 'integer', minimum: 2, maximum: 1000000 },
  /** What a small cell does: suppress the run's results (default) or hold them for review. */
  smallCells: { enum: ['suppress', 'hold'] },
  /** manual: every result waits for `node client approve` (or reject) before anything leaves. */
  review: { enum: ['none', 'manual'] },
  /** send (default), or withhold: the run's log never leaves the site. */
  logs: { enum: ['send', 'withhold'] },
  /** Most log bytes sent to the registry (the rest is cut). */
  logBytes: { type: 'integer', minimum: 0 },
  /** send (default), or withhold: progress reports never leave the site. */
  progress: { enum: ['send', 'withhold'] },
} as const;

const outputRules = { type: 'object', additionalProperties: false, properties: outputRuleProperties } as const;

export const sitePolicySchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  patternProperties: { '^//': {} },
  properties: {
    run: {
      type: 'object',
      additionalProperties: false,
      default: {},
      patternProperties: { '^//': {} },
      properties: {
        /** Reviewers' public keys the site trusts: base64 SPKI DER of Ed25519 keys. */
        trustedKeys: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'organization', 'publicKey'],
            properties: {
              name: { type: 'string', minLength: 1, maxLength: 128 },
              organization: { type: 'string', pattern: ORGANIZATION_NAME_PATTERN },
              publicKey: { type: 'string', minLength: 40, maxLength: 200 },
            },
          },
        },
        /** Valid signatures by distinct trusted keys an image's digest needs (0: none). */
        requiredSignatures: { type: 'integer', minimum: 0, maximum: 100, default: 0 },
        /** ... from at least this many distinct organizations (0: any). */
        distinctOrganizations: { type: 'integer', minimum: 0, maximum: 100, default: 0 },
        /** Deny rules are checked first; with any allow rule, a run must match one. */
        allow: { type: 'array', default: [], items: whoRule },
        deny: { type: 'array', default: [], items: whoRule },
      },
    },
    output: {
      type: 'object',
      additionalProperties: false,
      default: {},
      patternProperties: { '^//': {} },
      properties: {
        default: outputRules,
        /** By researcher name; merged over default. */
        byResearcher: {
          type: 'object',
          propertyNames: { pattern: USER_NAME_PATTERN },
          additionalProperties: outputRules,
        },
        /** By image (regular expression over the whole reference); the first match is merged over the rest. */
        byImage: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['image'],
            properties: { image: { type: 'string', minLength: 1, maxLength: 1000 }, ...outputRuleProperties },
          },
        },
      },
    },
  },
} as const;
