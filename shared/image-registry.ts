/**
 * Resolves an image reference to its manifest digest with the distribution API (HEAD, then GET,
 * of /v2/<repository>/manifests/<tag>), so a signature can be checked before anything is pulled
 * and the exact digest pulled afterwards. Registries on loopback are spoken to over plain HTTP
 * (as the Docker engine does); any other over HTTPS.
 */
import { DIGEST_PATTERN } from './governance.js';
import { IMAGE_REFERENCE_MAX_LENGTH, IMAGE_REFERENCE_PATTERN } from './names.js';

export interface ImageReference {
  /** host[:port] of the image registry. */
  registry: string;
  repository: string;
  tag: string | null;
  digest: string | null;
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export class ImageResolveError extends Error {
  override readonly name = 'ImageResolveError';
}

/** Splits a reference; a reference without a registry host (Docker Hub) cannot be resolved here. */
export function parseImageReference(image: string): ImageReference {
  if (image.length > IMAGE_REFERENCE_MAX_LENGTH || !new RegExp(IMAGE_REFERENCE_PATTERN).test(image))
    throw new ImageResolveError(`not a valid image reference: ${image.slice(0, 100)}`);
  let rest = image;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  if (slash < 0 || !(first.includes('.') || first.includes(':') || first === 'localhost'))
    throw new ImageResolveError(
      `image ${image} names no registry host; signatures need one (host:port/repository:tag)`,
    );
  const registry = first;
  let repository = rest.slice(slash + 1);
  let tag: string | null = null;
  const colon = repository.lastIndexOf(':');
  if (colon >= 0) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
  }
  if (tag === null && digest === null) tag = 'latest';
  return { registry, repository, tag, digest };
}

function isLoopback(host: string): boolean {
  const name = host.replace(/:[0-9]+$/, '');
  return name === 'localhost' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(name);
}

/**
 * The manifest digest (`sha256:…`) the registry serves for this reference now. A reference
 * pinned by digest is answered without asking. Throws ImageResolveError when the registry
 * cannot be asked or answers without a digest.
 */
export async function resolveImageDigest(
  image: string,
  timeoutMs = 10_000,
): Promise<{ ref: ImageReference; digest: string }> {
  const ref = parseImageReference(image);
  if (ref.digest) return { ref, digest: ref.digest };
  const url = `${isLoopback(ref.registry) ? 'http' : 'https'}://${ref.registry}/v2/${ref.repository}/manifests/${ref.tag!}`;
  const pattern = new RegExp(DIGEST_PATTERN);
  for (const method of ['HEAD', 'GET'] as const) {
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { accept: MANIFEST_TYPES },
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
      });
    } catch (e) {
      throw new ImageResolveError(`cannot reach the image registry ${ref.registry}: ${(e as Error).message}`);
    }
    await res.body?.cancel();
    if (res.status === 404) throw new ImageResolveError(`image ${image} is not in its registry`);
    if (res.status !== 200)
      throw new ImageResolveError(`image registry ${ref.registry} answered ${res.status} for ${image}`);
    const digest = res.headers.get('docker-content-digest');
    if (digest && pattern.test(digest)) return { ref, digest };
  }
  throw new ImageResolveError(`image registry ${ref.registry} gave no digest for ${image}`);
}

/** `registry/repository@sha256:…`: the reference that pulls exactly this digest. */
export function pinnedReference(ref: ImageReference, digest: string): string {
  return `${ref.registry}/${ref.repository}@${digest}`;
}
