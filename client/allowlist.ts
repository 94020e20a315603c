import micromatch from 'micromatch';

export interface AllowDecision {
  allowed: boolean;
  /** The pattern that matched, or why nothing did. */
  reason: string;
}

export interface Allowlist {
  readonly patterns: readonly string[];
  check(image: string): AllowDecision;
}

const GLOB_PREFIX = 'glob:';

/**
 * A site's image allowlist. Entries are regular expressions that must match the whole image
 * reference (`myConsortium/.*:.*`); entries starting with "glob:" are micromatch globs instead
 * (`glob:127.0.0.1:5050/pht/**`). An empty list allows nothing.
 */
export function compileAllowlist(patterns: readonly string[]): Allowlist {
  const matchers = patterns.map((pattern, i) => {
    if (pattern.startsWith(GLOB_PREFIX)) {
      const glob = pattern.slice(GLOB_PREFIX.length);
      if (!glob) throw new Error(`entry ${i} is an empty glob`);
      return { pattern, test: (image: string) => micromatch.isMatch(image, glob, { dot: true }) };
    }
    let re: RegExp;
    try {
      // Anchored on both ends: "myConsortium/.*" must not match "evil/myConsortium/x".
      re = new RegExp(`^(?:${pattern})$`);
    } catch (e) {
      throw new Error(`entry ${i} ("${pattern}") is not a valid regular expression: ${(e as Error).message}`);
    }
    return { pattern, test: (image: string) => re.test(image) };
  });
  return {
    patterns,
    check(image) {
      if (matchers.length === 0) return { allowed: false, reason: 'the site allows no images (empty allowlist)' };
      const hit = matchers.find((m) => m.test(image));
      return hit
        ? { allowed: true, reason: `matches allowlist entry "${hit.pattern}"` }
        : { allowed: false, reason: `image "${image}" matches no entry of the site's allowlist` };
    },
  };
}
