/**
 * Patterns for the names and references that cross a trust boundary. They are deliberately
 * narrower than what the underlying systems accept: whatever passes here can be used as a path
 * segment, a Docker API argument or a log field without quoting.
 */

/** A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest]. */
export const IMAGE_REFERENCE_PATTERN =
  '^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)?' +
  '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*' +
  '(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$';
export const IMAGE_REFERENCE_MAX_LENGTH = 512;

export const SITE_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
export const USER_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$';

/** Numeric ids in URLs. */
export const ID_PATTERN = /^[1-9][0-9]{0,14}$/;

const FILE_SEGMENT = /^[A-Za-z0-9._-]{1,255}$/;
export const MAX_FILE_PATH_LENGTH = 1024;
export const MAX_FILE_PATH_DEPTH = 16;
/**
 * The same rule as resultFilePathProblem, as a JSON-schema pattern (for the wire schemas, so the
 * SDK refuses a listing whose names could leave the folder they are saved in). Length: maxLength.
 */
export const RESULT_FILE_PATH_PATTERN =
  '^(?!\\.\\.?(?:/|$))(?!.*/\\.\\.?(?:/|$))[A-Za-z0-9._-]{1,255}(?:/[A-Za-z0-9._-]{1,255}){0,15}$';

/**
 * Checks a result file's path relative to the output folder. Returns a reason when it is not
 * acceptable, or null. Segments may not be `.` or `..`, so a path can never leave its folder.
 */
export function resultFilePathProblem(name: string): string | null {
  if (name.length === 0) return 'file name is empty';
  if (name.length > MAX_FILE_PATH_LENGTH) return `file name is longer than ${MAX_FILE_PATH_LENGTH} characters`;
  const segments = name.split('/');
  if (segments.length > MAX_FILE_PATH_DEPTH) return `file path is deeper than ${MAX_FILE_PATH_DEPTH} folders`;
  for (const segment of segments) {
    if (segment === '.' || segment === '..') return 'file path may not contain "." or ".." segments';
    if (!FILE_SEGMENT.test(segment)) {
      return 'file path segments may contain only letters, digits, ".", "_" and "-"';
    }
  }
  return null;
}

export function parseId(raw: string): number | null {
  return ID_PATTERN.test(raw) ? Number(raw) : null;
}

export function isDigestPinned(image: string): boolean {
  return /@sha256:[a-f0-9]{64}$/.test(image);
}
