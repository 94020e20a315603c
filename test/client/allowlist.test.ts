import { describe, expect, it } from 'vitest';
import { compileAllowlist } from '../../client/allowlist.js';

describe('image allowlist', () => {
  it('allows nothing when empty', () => {
    expect(compileAllowlist([]).check('127.0.0.1:5050/pht/x:1')).toEqual({
      allowed: false,
      reason: 'the site allows no images (empty allowlist)',
    });
  });

  it('matches regular expressions against the whole reference', () => {
    const list = compileAllowlist(['myConsortium/.*:.*']);
    expect(list.check('myConsortium/stats:1').allowed).toBe(true);
    expect(list.check('evil/myConsortium/stats:1').allowed).toBe(false);
    expect(list.check('myConsortium/stats').allowed).toBe(false);
  });

  it('cannot be widened by alternation inside an entry', () => {
    // Without grouping, "a|b" anchored as ^a|b$ would allow anything starting with "a".
    const list = compileAllowlist(['a/x:1|b/y:1']);
    expect(list.check('a/x:1').allowed).toBe(true);
    expect(list.check('a/x:1-but-longer').allowed).toBe(false);
  });

  it('accepts micromatch globs marked with glob:', () => {
    const list = compileAllowlist(['glob:127.0.0.1:5050/pht/**']);
    expect(list.check('127.0.0.1:5050/pht/stats:1').allowed).toBe(true);
    expect(list.check('127.0.0.1:5050/pht/deep/stats:1').allowed).toBe(true);
    expect(list.check('127.0.0.1:5050/other/stats:1').allowed).toBe(false);
  });

  it('says which entry matched and why an image was refused', () => {
    const list = compileAllowlist(['x/.*', 'y/.*']);
    expect(list.check('y/z:1').reason).toBe('matches allowlist entry "y/.*"');
    expect(list.check('q/z:1').reason).toBe('image "q/z:1" matches no entry of the site\'s allowlist');
  });
});
