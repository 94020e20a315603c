/**
 * The site client's small helper process for the system commands of run disks (mkfs.ext4, mount,
 * umount): see command-runner.ts for why. One request per line on stdin, one answer per line on
 * stdout, both JSON. It exits when its stdin closes, i.e. with the client.
 */
import { execFile } from 'node:child_process';
import readline from 'node:readline';
import { HELPER_COMMANDS, parseHelperRequest, type HelperAnswer } from './command-protocol.js';

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const request = parseHelperRequest(line);
  if (!request) return; // only the client writes here; nothing else to answer
  const answer = (a: HelperAnswer) => process.stdout.write(`${JSON.stringify(a)}\n`);
  if (!HELPER_COMMANDS.includes(request.file)) {
    answer({
      id: request.id,
      ok: false,
      code: null,
      message: `not a helper command: ${request.file}`,
      stdout: '',
      stderr: '',
    });
    return;
  }
  execFile(request.file, request.args, (error, stdout, stderr) => {
    const code =
      error && typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : null;
    answer({ id: request.id, ok: !error, code, message: error?.message ?? null, stdout, stderr });
  });
});
lines.on('close', () => process.exit(0));
