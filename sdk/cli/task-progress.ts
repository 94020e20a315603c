import type { Task } from '../../shared/types.js';
import { finalRunCount, runDetail, taskTitle } from './format.js';
import type { CliIo } from './io.js';
import { visible } from './terminal-text.js';

/**
 * Shows a task's runs while the CLI waits for it. On a terminal the block of per-site lines is
 * redrawn in place; anywhere else (CI logs, pipes) a line is printed whenever a site's line changes,
 * so the output stays readable as a plain log.
 */
export class TaskProgressView {
  private drawnLines = 0;
  private readonly printed = new Map<string, string>();
  private headerPrinted = false;

  constructor(private readonly out: CliIo['stdout']) {}

  update(task: Task): void {
    if (this.out.isTTY) this.redraw(task);
    else this.appendChanges(task);
  }

  private redraw(task: Task): void {
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const siteWidth = Math.max(4, ...task.runs.map((r) => r.site.length));
    const lines = [
      `${taskTitle(task)}: ${task.status}, ${finalRunCount(task)}/${task.runs.length} runs finished`,
      ...task.runs.map((r) => `  ${r.site.padEnd(siteWidth)}  ${r.status.padEnd(9)}  ${runDetail(r)}`.trimEnd()),
    ]
      // Only the cursor moves below may reach the terminal as control sequences.
      .map(visible)
      .map((line) => (line.length > width ? `${line.slice(0, width - 1)}…` : line));
    // Move back to the top of the block drawn last time, then overwrite it line by line. Lines are
    // cut to the terminal's width so that none wraps and the count stays right.
    let text = this.drawnLines > 0 ? `\x1b[${this.drawnLines}A` : '';
    for (const line of lines) text += `\r\x1b[2K${line}\n`;
    this.out.write(text);
    this.drawnLines = lines.length;
  }

  private appendChanges(task: Task): void {
    let text = '';
    if (!this.headerPrinted) {
      this.headerPrinted = true;
      text += `${taskTitle(task)}: waiting for ${task.runs.length} run${task.runs.length === 1 ? '' : 's'} (${task.runs.map((r) => visible(r.site)).join(', ')})\n`;
    }
    for (const run of task.runs) {
      const line = visible(`${run.site}: ${run.status}${runDetail(run) ? ` ${runDetail(run)}` : ''}`);
      if (this.printed.get(run.site) === line) continue;
      this.printed.set(run.site, line);
      text += `${line}\n`;
    }
    if (text) this.out.write(text);
  }
}
