/**
 * The architecture rules of eslint.config.mjs, pinned: each probe imports across a boundary the
 * way a change might (named, side-effect, dynamic, require) and must be refused; a cycle, even
 * through a side-effect import, must be found. The probes are linted as text or in a temporary
 * folder that is removed afterwards. Probes import files that exist: the rule judges where an
 * import leads, and an import that leads nowhere is tsc's to refuse.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ESLint } from 'eslint';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const eslint = new ESLint({ cwd: ROOT, cache: false });

async function problems(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(ROOT, file) });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'fatal'}: ${m.message}`);
}

describe('import boundaries', () => {
  it.each([
    ['shared/probe.mjs', "import { RegistryError } from '../master/errors.js'; export default RegistryError;"],
    ['shared/probe.mjs', "import '../client/allowlist.js';"],
    ['sdk/probe.mjs', "import '../master/errors.js';"],
    ['sdk/probe.mjs', "export const load = () => import('../client/allowlist.js');"],
    ['master/probe.mjs', "import { compileAllowlist } from '../client/allowlist.js'; export default compileAllowlist;"],
    ['client/probe.cjs', "module.exports = require('../master/errors.js');"],
    ['client/probe.mjs', "import '../sdk/errors.js';"],
    ['shared/probe.mjs', "import '../test/master/helpers.js';"],
    ['ui/probe.mjs', "import '../master/errors.js';"],
  ])('refuses %s importing across a boundary: %s', async (file, code) => {
    expect(await problems(file, code)).toEqual([
      expect.stringMatching(/^import-x\/no-restricted-paths: .*may import only/),
    ]);
  });

  it.each([
    ['master/probe.mjs', "import '../shared/error-codes.js'; import './errors.js';"],
    ['sdk/probe.mjs', "import '../shared/run-state.js';"],
    ['ui/probe.mjs', "import '../shared/run-state.js'; import './src/format.js';"],
    ['test/probe.mjs', "import '../master/errors.js'; import '../client/allowlist.js';"],
  ])('allows %s: %s', async (file, code) => {
    expect(await problems(file, code)).toEqual([]);
  });
});

describe('import cycles', () => {
  const dir = path.join(ROOT, 'test', `.lint-probe-${process.pid}`);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds a cycle, also one closed by a side-effect import', async () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.mjs'), "import { b } from './b.mjs'; export const a = () => b;\n");
    fs.writeFileSync(path.join(dir, 'b.mjs'), "import './c.mjs'; export const b = 1;\n");
    fs.writeFileSync(path.join(dir, 'c.mjs'), "import './a.mjs';\n");
    const [result] = await eslint.lintFiles([path.join(dir, 'a.mjs')]);
    expect(result?.messages.map((m) => m.ruleId)).toEqual(['import-x/no-cycle']);
    fs.writeFileSync(path.join(dir, 'c.mjs'), '\n');
    const [after] = await new ESLint({ cwd: ROOT, cache: false }).lintFiles([path.join(dir, 'a.mjs')]);
    expect(after?.messages).toEqual([]);
  });
});
