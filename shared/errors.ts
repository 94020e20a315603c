/** Normalises anything thrown into an Error, so every `catch` can log and rethrow uniformly. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(JSON.stringify(thrown));
  } catch {
    return new Error(String(thrown));
  }
}

/** Thrown when a configuration file or an environment override is missing or invalid. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly file: string | null,
  ) {
    super(message);
  }
}

/** The error code a Node system error carries (ECONNREFUSED, ENOSPC, ...), if any. */
export function errorCode(thrown: unknown): string | undefined {
  if (thrown && typeof thrown === 'object' && 'code' in thrown) {
    const code = (thrown as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
