/**
 * JSON schemas of the admin routes' request bodies (/api/v1/admin): the same rules as the
 * `node master` admin commands, so a name accepted here is accepted there.
 */
import { SITE_NAME_PATTERN, USER_NAME_PATTERN } from './names.js';
import { compile } from './validation.js';

export const createSiteSchema = {
  $id: 'CreateSiteRequest',
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: { type: 'string', pattern: SITE_NAME_PATTERN } },
} as const;

export const createUserSchema = {
  $id: 'CreateUserRequest',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'role'],
  properties: {
    name: { type: 'string', pattern: USER_NAME_PATTERN },
    role: { enum: ['researcher', 'admin'] },
  },
} as const;

export const validateCreateSite = compile<{ name: string }>(createSiteSchema, 'body');
export const validateCreateUser = compile<{ name: string; role: 'researcher' | 'admin' }>(createUserSchema, 'body');
