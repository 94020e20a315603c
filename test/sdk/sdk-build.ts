import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir } from '../helpers/temp-dirs.js';

export const ROOT = path.resolve(__dirname, '../..');

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(rel);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [rel] : [];
  });
}

function isStale(): boolean {
  return [...sources('sdk'), ...sources('shared')].some((source) => {
    const built = path.join(ROOT, 'dist', source.replace(/\.ts$/, '.js'));
    return !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(path.join(ROOT, source)).mtimeMs;
  });
}

/**
 * Makes sure dist/ holds the current SDK and CLI, so that the tests below run what `pht` and
 * `require('pht')` really run. When dist is stale it compiles just sdk/ (and the shared modules it
 * imports) with the project's build settings, leaving the rest of the repository alone.
 */
export function ensureSdkBuilt(): void {
  if (!isStale()) return;
  const dir = makeTempDir('pht-sdk-build-');
  try {
    const config = path.join(dir, 'tsconfig.json');
    // Type roots resolve from the config's folder: point them back at the repository's.
    const settings = {
      extends: path.join(ROOT, 'tsconfig.build.json'),
      compilerOptions: { typeRoots: [path.join(ROOT, 'node_modules/@types')] },
      include: [path.join(ROOT, 'sdk')],
    };
    fs.writeFileSync(config, JSON.stringify(settings));
    try {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', config], {
        cwd: ROOT,
        stdio: 'pipe',
      });
    } catch (e) {
      const output = (e as { stdout?: Buffer }).stdout?.toString() ?? '';
      throw new Error(`building the SDK failed:\n${output}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
