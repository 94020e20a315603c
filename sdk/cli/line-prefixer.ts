import { visibleText } from './terminal-text.js';

/**
 * Prefixes every line of a stream of text chunks (which may split lines anywhere) with a label,
 * so that the logs of several runs can be interleaved and still be read. The text is a container's
 * output: its control characters are shown escaped, never sent to the terminal as they are.
 */
export class LinePrefixer {
  private pending = '';

  constructor(
    private readonly prefix: string,
    private readonly write: (text: string) => void,
  ) {}

  push(text: string): void {
    const lines = (this.pending + text).split('\n');
    this.pending = lines.pop()!;
    if (lines.length > 0) this.write(lines.map((line) => `${this.prefix}${visibleText(line)}\n`).join(''));
  }

  /** Writes a last line that had no newline. */
  flush(): void {
    if (this.pending) this.write(`${this.prefix}${visibleText(this.pending)}\n`);
    this.pending = '';
  }
}
