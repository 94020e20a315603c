import fs from 'node:fs';
import path from 'node:path';

/** What the officer sees of one output file. */
export interface FilePreview {
  name: string;
  size: number;
  /** The first lines of a text file; null for a binary one. */
  head: string[] | null;
}

/** Written when a run's results are held: why, and what is waiting. */
export interface HeldRecord {
  heldAt: string;
  reasons: string[];
  state: string;
  files: FilePreview[];
  moreFiles: number;
}

export interface ReviewDecision {
  decision: 'approved' | 'rejected';
  by: string;
  at: string;
  reason: string | null;
}

/**
 * A run's review folder, `<run workspace>/review/`, outside anything the container can write:
 * the held record and preview, the held log and progress, and the officer's decision. Files are
 * written whole (temporary file and rename), so a crash leaves either the old or the new one,
 * and a decision survives client restarts.
 */
export class ReviewFolder {
  readonly dir: string;

  constructor(runDir: string) {
    this.dir = path.join(runDir, 'review');
  }

  static forRun(workDir: string, runId: number): ReviewFolder {
    return new ReviewFolder(path.join(workDir, 'runs', String(runId)));
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  private readJson<T>(name: string): T | null {
    try {
      return JSON.parse(fs.readFileSync(this.file(name), 'utf8')) as T;
    } catch {
      return null;
    }
  }

  private writeJson(name: string, value: unknown): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = this.file(`${name}.tmp`);
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(value, null, 2));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file(name));
  }

  held(): HeldRecord | null {
    return this.readJson<HeldRecord>('held.json');
  }

  hold(record: HeldRecord): void {
    this.writeJson('held.json', record);
  }

  decision(): ReviewDecision | null {
    const d = this.readJson<ReviewDecision>('decision.json');
    return d && (d.decision === 'approved' || d.decision === 'rejected') ? d : null;
  }

  decide(decision: ReviewDecision): void {
    this.writeJson('decision.json', decision);
  }

  /** True once the client has written the decision to the audit log. */
  decisionRecorded(): boolean {
    return fs.existsSync(this.file('decision-recorded'));
  }

  markDecisionRecorded(): void {
    fs.writeFileSync(this.file('decision-recorded'), new Date().toISOString());
  }

  /** The requested image and other facts noted before the run started. */
  notes(): { requestedImage?: string } {
    return this.readJson<{ requestedImage?: string }>('notes.json') ?? {};
  }

  note(notes: { requestedImage: string }): void {
    this.writeJson('notes.json', notes);
  }

  appendLog(text: string): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.appendFileSync(this.file('log.txt'), text, { mode: 0o600 });
  }

  heldLog(): string {
    try {
      return fs.readFileSync(this.file('log.txt'), 'utf8');
    } catch {
      return '';
    }
  }

  appendProgress(report: unknown): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.appendFileSync(this.file('progress.jsonl'), JSON.stringify(report) + '\n', { mode: 0o600 });
  }

  heldProgress(): unknown[] {
    try {
      return fs
        .readFileSync(this.file('progress.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as unknown);
    } catch {
      return [];
    }
  }

  /** Log bytes already sent to the registry for this run (for the policy's logBytes cap). */
  logBytesSent(): number {
    try {
      return Number(fs.readFileSync(this.file('log-bytes-sent'), 'utf8')) || 0;
    } catch {
      return 0;
    }
  }

  setLogBytesSent(n: number): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(this.file('log-bytes-sent'), String(n));
  }
}
