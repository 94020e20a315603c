import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeMachine, machineInfo } from './machine.js';

/** The repository root (dist/bench/lib → three levels up; bench/lib when run from source). */
export const REPO_ROOT = findRepoRoot(__dirname);

const FILE = path.join(REPO_ROOT, 'BENCHMARKS.md');
/** Sections keep this order in the file whatever order the scripts run in. */
const ORDER = [
  'overhead',
  'dispatch',
  'scale',
  'scale-profile-long',
  'scale-profile-plain',
  'scale-profile-long-plain',
  'scale-before',
  'scale-after',
  'broadcast',
  'create-stalls',
  'capacity',
  'store-costs',
  'throughput',
  'large-results',
];

/** Load when the script started: the machine is shared, and a busy one slows Docker down a lot. */
const LOAD_AT_START = os.loadavg();
const PRESSURE_AT_START = cpuPressure();

const HEADER = `# Benchmarks

Figures from \`bench/\` (not part of \`npm test\`). Each section is rewritten by its script: the
command, the machine and the date are in the section. Build first (\`npm run build\`), then run
them all with \`npm run bench\`, or one with \`npm run bench:<name>\`. They need the infrastructure of
\`bash scripts/infra.sh up\` (Docker engine, image registry on 127.0.0.1:5050, base image).

The machine is small and shared (2 cores): read the figures as orders of magnitude, and compare
figures measured in the same run (the scripts interleave what they compare for that reason).
`;

export interface Section {
  id: string;
  title: string;
  command: string;
  /** Markdown body: targets, tables, explanations. */
  body: string;
}

/** Replaces (or adds) the section `id` of BENCHMARKS.md, between its markers. */
export function writeSection(section: Section): void {
  const machine = machineInfo();
  const text = [
    `<!-- bench:${section.id} -->`,
    `## ${section.title}`,
    '',
    `Command: \`${section.command}\`  `,
    `Machine: ${describeMachine(machine)}  `,
    `Date: ${machine.date}  `,
    `Code: ${codeVersion()}  `,
    `Load average (1/5/15 min) at start: ${loadText(LOAD_AT_START)}; at the end: ${loadText(os.loadavg())}  `,
    `CPU pressure (share of the last 60 s in which some task waited for a CPU) at start: ${PRESSURE_AT_START}; at the end: ${cpuPressure()}`,
    '',
    section.body.trim(),
    `<!-- /bench:${section.id} -->`,
  ].join('\n');
  const current = fs.existsSync(FILE) ? fs.readFileSync(FILE, 'utf8') : HEADER;
  const sections = new Map<string, string>();
  // Ids may hold digits (scale-10000): a pattern without them dropped those sections at every write.
  const pattern = /<!-- bench:([a-z0-9-]+) -->[\s\S]*?<!-- \/bench:\1 -->/g;
  for (const match of current.matchAll(pattern)) sections.set(match[1]!, match[0]);
  sections.set(section.id, text);
  const head = current.split('<!-- bench:')[0]!.trimEnd();
  const ids = [...sections.keys()].sort((a, b) => rank(a) - rank(b));
  fs.writeFileSync(FILE, `${head}\n\n${ids.map((id) => sections.get(id)).join('\n\n')}\n`);
  console.log(`\nBENCHMARKS.md: section "${section.title}" updated`);
}

/** The commit measured, and whether the measured programs had uncommitted changes. */
function codeVersion(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'master', 'client', 'shared', 'sdk'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    }).trimEnd(); // not trim(): the first line's status column starts with a space (" M client/...")
    return dirty
      ? `${head} with uncommitted changes in ${[...new Set(dirty.split('\n').map((l) => l.slice(3).split('/')[0]))].join(', ')}`
      : head;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** Linux PSI: how much of the last minute runnable tasks waited for a CPU (other work on the machine). */
export function cpuPressure(): string {
  try {
    const avg60 = /some avg10=[0-9.]+ avg60=([0-9.]+)/.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'))?.[1];
    return avg60 === undefined ? 'unknown' : `${avg60} %`;
  } catch {
    return 'unknown';
  }
}

function loadText(load: number[]): string {
  return load.map((l) => l.toFixed(2)).join(' / ');
}

function rank(id: string): number {
  const i = ORDER.indexOf(id);
  return i === -1 ? ORDER.length : i;
}

function findRepoRoot(start: string): string {
  let dir = start;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${start}`);
    dir = parent;
  }
  return dir;
}
