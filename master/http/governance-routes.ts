import { Router, type Request, type Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import {
  keyIdOf,
  postImageSignatureSchema,
  signatureQuerySchema,
  verifyDigestSignature,
  type PostImageSignature,
} from '../../shared/governance.js';
import { compile } from '../../shared/validation.js';
import { RegistryError } from '../errors.js';
import { principalOf, requireSite, requireUser } from './auth.js';
import type { RegistryContext } from './context.js';
import { jsonBody, query } from './request-parsing.js';

const validatePostSignature = compile<PostImageSignature>(postImageSignatureSchema, 'body');
const validateSignatureQuery = compile<{ digest: string }>(signatureQuerySchema, 'query');

/**
 * Reviewers' signatures of image digests. The registry keeps them beside the digest and checks
 * that each is a valid Ed25519 signature by the key it names (so garbage is refused early), but
 * it is not trusted for them: a site verifies again against the keys its own policy trusts.
 */
export function governanceRoutes(ctx: RegistryContext): { user: Router; site: Router } {
  const { store } = ctx;
  const user = Router();
  const site = Router();

  user.post('/images/signatures', requireUser, async (req: Request, res: Response) => {
    const body = jsonBody(req, validatePostSignature);
    if (!verifyDigestSignature(body.publicKey, body.digest, body.signature))
      throw new RegistryError(
        422,
        ERROR_CODES.validation,
        'the signature does not verify for this digest and Ed25519 public key',
      );
    const keyId = keyIdOf(body.publicKey);
    await store.addImageSignature(principalOf(res).id, { ...body, keyId });
    res.status(201).json({ digest: body.digest, keyId, signer: body.signer });
  });

  const list = async (req: Request, res: Response) => {
    res.json(await store.listImageSignatures(query(req, validateSignatureQuery).digest));
  };
  user.get('/images/signatures', requireUser, list);
  site.get('/images/signatures', requireSite, list);
  return { user, site };
}

/** The OpenAPI paths of these routes (merged into the document by openapi.ts). */
export function governanceOpenApiPaths(
  ok: (description: string, ref?: string) => object,
  errors: Record<string, object>,
): Record<string, object> {
  const digestParam = { name: 'digest', in: 'query', required: true, schema: signatureQuerySchema.properties.digest };
  const { $id: _id, ...bodySchema } = postImageSignatureSchema;
  const listing = { summary: 'Signatures stored for an image digest', parameters: [digestParam] };
  return {
    '/images/signatures': {
      post: {
        summary: "Store a reviewer's Ed25519 signature of an image digest",
        requestBody: { content: { 'application/json': { schema: bodySchema } } },
        responses: { '201': ok('Stored'), '422': ok('Signature does not verify', 'Error'), ...errors },
      },
      get: { ...listing, responses: { '200': ok('Signatures'), ...errors } },
    },
    '/site/images/signatures': { get: { ...listing, responses: { '200': ok('Signatures'), ...errors } } },
  };
}
