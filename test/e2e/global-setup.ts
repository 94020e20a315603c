import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { requireInfrastructure } from '../helpers/docker.js';

/** End-to-end suites spawn `node master` / `node client` from dist/: build once, check Docker. */
export default async function setup(): Promise<void> {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: path.join(__dirname, '..', '..'), stdio: 'inherit' });
  await requireInfrastructure();
}
