/**
 * Debian's nginx as the load balancer in front of several registry processes, run from the
 * project's own config (deploy/nginx/pht-registry.conf) with the test's ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makeTempDir } from './temp-dirs.js';

/** The project's nginx config, from the sources (test/helpers) or the build (dist/test/helpers). */
export const NGINX_CONFIG = [path.join(__dirname, '..', '..'), path.join(__dirname, '..', '..', '..')]
  .map((root) => path.join(root, 'deploy', 'nginx', 'pht-registry.conf'))
  .find((file) => fs.existsSync(file))!;

export function nginxBinary(): string | null {
  for (const candidate of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (fs.existsSync(candidate)) return candidate;
  return null;
}

/** The project's config with `listenPort` in front and `upstreamPorts` behind. */
export function renderNginxConfig(listenPort: number, upstreamPorts: readonly number[]): string {
  const source = fs.readFileSync(NGINX_CONFIG, 'utf8');
  const serverLine = /^(\s*)server 127\.0\.0\.1:\d+ (.*)$/m;
  const match = serverLine.exec(source);
  if (!match) throw new Error(`no upstream server line in ${NGINX_CONFIG}`);
  const servers = upstreamPorts.map((p) => `${match[1]}server 127.0.0.1:${p} ${match[2]}`).join('\n');
  const withoutServers = source.replace(/^\s*server 127\.0\.0\.1:\d+ .*\n/gm, '');
  const rendered = withoutServers
    .replace(/(upstream pht_registry \{\n(?:\s*#.*\n)*)/, `$1${servers}\n`)
    .replace(/listen 127\.0\.0\.1:\d+;/, `listen 127.0.0.1:${listenPort};`);
  if (!rendered.includes(`listen 127.0.0.1:${listenPort};`)) throw new Error('could not set the listen port');
  return rendered;
}

export interface RunningNginx {
  url: string;
  dir: string;
  stop(): Promise<void>;
}

/** Starts nginx in the foreground (`daemon off`) as a child of the test, with its files in a temp dir. */
export async function startNginx(listenPort: number, upstreamPorts: readonly number[]): Promise<RunningNginx> {
  const bin = nginxBinary();
  if (!bin) throw new Error('nginx is not installed (apt-get install -y nginx)');
  const dir = makeTempDir('pht-nginx-');
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, renderNginxConfig(listenPort, upstreamPorts));
  const out = fs.openSync(path.join(dir, 'nginx.out'), 'a');
  const child: ChildProcess = spawn(bin, ['-c', conf, '-p', `${dir}/`, '-g', 'daemon off;'], {
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const until = Date.now() + 10_000;
  while (!(await accepts(listenPort))) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not start: ${fs.readFileSync(path.join(dir, 'nginx.out'), 'utf8')}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `http://127.0.0.1:${listenPort}`,
    dir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGQUIT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export { freePort } from './ports.js';
