import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { compileClientConfig, loadClientConfig } from '../../client/config.js';
import { checkWho, countSignatures, validPostedBy } from '../../client/policy/run-gate.js';
import { compileSitePolicy, NO_POLICY, outputRulesFor } from '../../client/policy/site-policy.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { clientConfigSchema } from '../../shared/config-schemas.js';
import { ConfigError } from '../../shared/errors.js';
import { generateReviewerKeyPair, keyIdOf, signDigest } from '../../shared/governance.js';

function load(policy: unknown) {
  const raw = loadRawConfig({
    file: null,
    fileRequired: false,
    schema: clientConfigSchema,
    env: {},
    envOverrides: [],
    flagOverrides: {
      registryUrl: 'http://127.0.0.1:5000',
      apiKey: 'pht_site_abcdefgh',
      sparqlEndpoint: 'http://127.0.0.1:7878/sparql',
      allowedImages: ['.*'],
      policy,
    },
  });
  return compileClientConfig(raw, null, '/tmp');
}

describe('site policy in the client config', () => {
  it('loads the hospital policy of config.example.json', () => {
    const example = loadClientConfig(path.join(__dirname, '..', '..', 'config.example.json'), {}).policy;
    expect(example.run).toMatchObject({ requiredSignatures: 2, distinctOrganizations: 2 });
    expect(example.run.trustedKeys.map((k) => k.organization)).toEqual(['umc-utrecht', 'maastricht-umc']);
    expect(outputRulesFor(example, '127.0.0.1:5050/pht/descriptive-stats:1', 'alice').review).toBe('none');
    expect(outputRulesFor(example, '127.0.0.1:5050/pht/other:1', 'alice').review).toBe('manual');
  });

  it('is off by default: no rules, no signatures, nothing held', () => {
    expect(load(undefined).policy).toEqual(NO_POLICY);
    expect(checkWho(NO_POLICY, null, 'any/image:1')).toBeNull();
  });

  it('names the field of each mistake', () => {
    expect(() => load({ run: { requiredSignatures: -1 } })).toThrow(/policy\.run\.requiredSignatures/);
    expect(() => load({ output: { default: { review: 'sometimes' } } })).toThrow(/policy\.output\.default\.review/);
    expect(() => load({ run: { allow: [{ reason: 'x' }] } })).toThrow(
      'policy.run.allow[0]: a rule needs at least one of researcher, organization, project, image',
    );
    expect(() => load({ run: { deny: [{ image: '(' }] } })).toThrow(
      /policy\.run\.deny\[0\]\.image: not a valid regular/,
    );
    expect(() =>
      load({ run: { trustedKeys: [{ name: 'a', organization: 'umc', publicKey: 'A'.repeat(60) }] } }),
    ).toThrow(/policy\.run\.trustedKeys\[0\]\.publicKey/);
    const key = generateReviewerKeyPair().publicKey;
    expect(() =>
      load({ run: { trustedKeys: [{ name: 'a', organization: 'umc', publicKey: key }], requiredSignatures: 2 } }),
    ).toThrow('policy.run.requiredSignatures: needs 2 signatures but only 1 keys are trusted');
    expect(() =>
      load({
        run: {
          trustedKeys: [{ name: 'a', organization: 'umc', publicKey: key }],
          requiredSignatures: 1,
          distinctOrganizations: 2,
        },
      }),
    ).toThrow(ConfigError);
  });

  it('merges output rules: default, then the researcher, then the first matching image', () => {
    const policy = load({
      output: {
        default: { maxFiles: 5, review: 'manual' },
        byResearcher: { alice: { maxFiles: 2 } },
        byImage: [{ image: '.*/trusted-stats:.*', review: 'none' }],
      },
    }).policy;
    expect(outputRulesFor(policy, 'r/x:1', 'bob')).toEqual({ maxFiles: 5, review: 'manual' });
    expect(outputRulesFor(policy, 'r/x:1', 'alice')).toEqual({ maxFiles: 2, review: 'manual' });
    expect(outputRulesFor(policy, 'r/trusted-stats:2', 'alice')).toEqual({ maxFiles: 2, review: 'none' });
    expect(compileSitePolicy(undefined, null)).toBe(NO_POLICY);
  });

  it('counts only valid signatures of this digest by trusted keys, once per key', () => {
    const digest = `sha256:${'1'.repeat(64)}`;
    const a = generateReviewerKeyPair();
    const b = generateReviewerKeyPair();
    const trusted = [{ name: 'a', organization: 'umc', publicKey: a.publicKey, keyId: keyIdOf(a.publicKey) }];
    const good = signDigest(a.privateKeyPem, digest);
    const other = signDigest(a.privateKeyPem, `sha256:${'2'.repeat(64)}`);
    const stranger = signDigest(b.privateKeyPem, digest);
    const counted = countSignatures(trusted, digest, [
      good,
      good,
      { publicKey: a.publicKey, signature: other.signature },
      stranger,
      'garbage',
      { publicKey: '!!', signature: 'x' },
    ]);
    expect(counted.valid).toEqual([{ signer: 'a', organization: 'umc', keyId: keyIdOf(a.publicKey) }]);
    expect(counted.untrusted).toBe(2);
    expect(counted.invalid).toBe(1);
  });

  it('takes who posted a run from the registry only when every name in it is well-formed', () => {
    expect(validPostedBy({ researcher: 'alice', organization: 'umc', project: 'diabetes' })).toEqual({
      researcher: 'alice',
      organization: 'umc',
      project: 'diabetes',
    });
    expect(validPostedBy({ researcher: 'alice', organization: null })).toEqual({
      researcher: 'alice',
      organization: null,
      project: null,
    });
    expect(validPostedBy({ researcher: 'alice', organization: 'UMC; DROP', project: null })).toBeNull();
    expect(validPostedBy({ researcher: 'alice', organization: 'umc', project: 7 })).toBeNull();
    expect(validPostedBy({ researcher: '../../etc' })).toBeNull();
    expect(validPostedBy('alice')).toBeNull();
    expect(validPostedBy(null)).toBeNull();
  });

  it('refuses when rules depend on who asked and the registry did not say', () => {
    const policy = load({ run: { deny: [{ researcher: 'mallory' }] } }).policy;
    expect(checkWho(policy, null, 'a/b:1')).toContain('did not say who posted');
    expect(checkWho(policy, { researcher: 'alice', organization: null, project: null }, 'a/b:1')).toBeNull();
  });
});
