import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './report.js';

/** A checkout whose registry a benchmark runs: this one, or a baseline commit built for comparison. */
export interface Build {
  label: string;
  root: string;
}

export const THIS_CHECKOUT: Build = { label: 'this checkout', root: REPO_ROOT };

/**
 * A build of another commit: its registry and store (or the `folders` named, e.g. its site
 * client too) compiled in a temporary directory.
 */
export function buildBaseline(ref: string, folders: string[] = ['shared', 'master']): Build {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-baseline-'));
  const commit = execFileSync('git', ['rev-parse', '--short', ref], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  console.log(`building baseline ${commit} in ${dir}`);
  const archive = execFileSync('git', ['archive', commit], { cwd: REPO_ROOT, maxBuffer: 1 << 30 });
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  fs.writeFileSync(
    path.join(dir, 'tsconfig.capacity.json'),
    JSON.stringify({ extends: './tsconfig.json', include: folders, exclude: ['**/*.test.ts'] }),
  );
  execFileSync(
    process.execPath,
    [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.capacity.json'],
    {
      cwd: dir,
      stdio: 'inherit',
    },
  );
  execFileSync(process.execPath, ['scripts/copy-assets.js'], { cwd: dir, stdio: 'inherit' });
  return { label: `baseline ${commit}`, root: dir };
}

/** Removes a baseline build (never this checkout). */
export function removeBuild(build: Build): void {
  if (build.root !== REPO_ROOT) fs.rmSync(build.root, { recursive: true, force: true });
}
