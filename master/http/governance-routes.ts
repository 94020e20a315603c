import { Router, type Request, type Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import {
  keyIdOf,
  postImageSignatureSchema,
  signatureQuerySchema,
  verifyDigestSignature,
  type PostImageSignature,
} from '../../shared/governance.js';
import { compile, compileQuery } from '../../shared/validation.js';
import { RegistryError } from '../errors.js';
import { principalOf, requireSite, requireUser } from './auth.js';
import type { RegistryContext } from './context.js';
import type { RouteDoc } from './openapi.js';
import { validateEmptyBody } from '../../shared/schemas.js';
import { idParam, jsonBody, query } from './request-parsing.js';

const validatePostSignature = compile<PostImageSignature>(postImageSignatureSchema, 'body');
const validateSignatureQuery = compileQuery<{ digest: string }>(signatureQuerySchema);

/** The routes below, for the OpenAPI document (master/http/openapi.ts). */
export const GOVERNANCE_ROUTES: readonly RouteDoc[] = [
  {
    method: 'post',
    path: '/images/signatures',
    summary: "Store a reviewer's Ed25519 signature of an image digest (replaces that key's earlier one)",
    who: 'researcher',
    body: { json: 'PostImageSignature' },
    answers: {
      '201': { description: 'Stored', json: 'StoredImageSignature' },
      '422': { description: 'The signature does not verify for this digest and key', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/images/signatures',
    summary: 'The signatures stored for an image digest',
    who: 'researcher',
    query: signatureQuerySchema,
    answers: { '200': { description: 'Signatures, oldest first', json: 'ImageSignatureList' } },
  },
  {
    method: 'get',
    path: '/site/images/signatures',
    summary: 'The signatures stored for an image digest (sites verify them against the keys they trust)',
    who: 'site',
    query: signatureQuerySchema,
    answers: { '200': { description: 'Signatures, oldest first', json: 'ImageSignatureList' } },
  },
  {
    method: 'post',
    path: '/site/runs/{id}/await-approval',
    summary: "The run's results wait for the site officer's review (state awaiting_approval)",
    who: 'site',
    body: { json: 'EmptyBody', optional: true },
    answers: {
      '200': { description: 'The run', json: 'SiteRunView' },
      '409': { description: 'Not running', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
];

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

  // The site's officer reviews the results before anything leaves; the researcher sees why it waits.
  site.post('/runs/:id/await-approval', requireSite, async (req: Request, res: Response) => {
    const principal = principalOf(res);
    const runId = idParam(req, 'id');
    jsonBody(req, validateEmptyBody, true);
    const view = await store.awaitApproval(principal.id, runId);
    ctx.logger.info('run awaits approval at its site', { runId, taskId: view.taskId, site: principal.name });
    ctx.events.notifyTask(view.taskId);
    res.json(view);
  });
  return { user, site };
}
