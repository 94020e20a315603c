import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { generateDemoData, patientsToTurtle } from '../../demo/synthetic-data.js';

export const ALGORITHMS_DIR = path.join(__dirname, '../../algorithms');

export interface AlgorithmRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Parsed result.json, or null when the run wrote none. */
  result: unknown;
  /** Parsed progress lines. */
  progress: Array<{ current: number; total: number; message: string }>;
}

/**
 * Runs an algorithm's main.js with the host's node, exactly as the image's ENTRYPOINT would,
 * with the container contract's variables pointing into a fresh temp dir (removed afterwards).
 * `config` undefined writes no config file at all.
 */
export async function runAlgorithm(
  name: 'descriptive-stats' | 'logistic-regression',
  options: { endpoint: string; config?: unknown; rawConfig?: string; taskId?: string; runId?: string },
): Promise<AlgorithmRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pht-${name}-`));
  try {
    const outputDir = path.join(dir, 'output');
    fs.mkdirSync(outputDir);
    const configFile = path.join(dir, 'config.json');
    if (options.rawConfig !== undefined) fs.writeFileSync(configFile, options.rawConfig);
    else if (options.config !== undefined) fs.writeFileSync(configFile, JSON.stringify(options.config));
    const progressFile = path.join(dir, 'progress.jsonl');
    const env: Record<string, string> = {
      SPARQL_ENDPOINT: options.endpoint,
      PHT_CONFIG_FILE: configFile,
      PHT_OUTPUT_DIR: outputDir,
      PHT_PROGRESS_FILE: progressFile,
      PHT_TASK_ID: options.taskId ?? '7',
      PHT_RUN_ID: options.runId ?? '21',
    };
    const child = spawn(process.execPath, [path.join(ALGORITHMS_DIR, name, 'main.js')], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve(code));
    });
    const resultFile = path.join(outputDir, 'result.json');
    const result: unknown = fs.existsSync(resultFile) ? JSON.parse(fs.readFileSync(resultFile, 'utf8')) : null;
    const progress = fs.existsSync(progressFile)
      ? fs
          .readFileSync(progressFile, 'utf8')
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as AlgorithmRun['progress'][number])
      : [];
    return { exitCode, stdout, stderr, result, progress };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One SPARQL endpoint per demo site, serving that site's generated Turtle on 127.0.0.1. */
export async function startDemoSites(
  seed?: number,
): Promise<{ endpoints: Map<string, string>; close(): Promise<void> }> {
  const servers: RunningSparqlServer[] = [];
  const endpoints = new Map<string, string>();
  try {
    for (const [site, patients] of generateDemoData(seed)) {
      const server = await startSparqlServer({ turtle: patientsToTurtle(patients), host: '127.0.0.1', port: 0 });
      servers.push(server);
      endpoints.set(site, server.url);
    }
  } catch (thrown) {
    await Promise.all(servers.map((s) => s.close()));
    throw thrown;
  }
  return {
    endpoints,
    async close() {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}
