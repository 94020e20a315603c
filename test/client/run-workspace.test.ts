import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { RunWorkspace, type DiskSpec } from '../../client/run-workspace.js';
import type { RunAssignment } from '../../shared/types.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const assignment: RunAssignment = {
  id: 7,
  taskId: 3,
  image: '127.0.0.1:5050/pht/never-run:1',
  config: {},
  attempt: 1,
} as RunAssignment;

const spec: DiskSpec = { mode: 'unenforced', bytes: 1 << 20, inodes: 64, uid: 65534, gid: 65534 };

describe('run workspace', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(process.getuid?.() === 0)(
    'gives the container its writable folders again when a client died between creating and handing them over',
    async () => {
      const workDir = makeTempDir('pht-ws-');
      dirs.push(workDir);
      const ws = RunWorkspace.create(workDir, 'site-a', assignment);
      // What a SIGKILL right after mkdir leaves: the folder exists, owned by root, mode 0755.
      fs.mkdirSync(ws.outputDir, { recursive: true, mode: 0o755 });
      const resumed = RunWorkspace.loadAll(workDir).workspaces[0]!;
      await resumed.prepareDisk(spec);
      for (const folder of [resumed.outputDir, resumed.progressDir]) {
        const stat = fs.statSync(folder);
        expect({ uid: stat.uid, gid: stat.gid, mode: stat.mode & 0o777 }).toEqual({
          uid: 65534,
          gid: 65534,
          mode: 0o700,
        });
      }
    },
  );
});
