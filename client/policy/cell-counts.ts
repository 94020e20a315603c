/**
 * Small cells in count tables: a published count between 1 and N-1 can identify patients. Counts
 * are recognised by name: a CSV column or a JSON property called `n`, `count`, `counts`, or
 * ending in `_n`, `_count` or `Count` (case-insensitive for CSV headers). Zero is not a small cell.
 */

const COUNT_NAME = /^(n|count|counts|.+_count|.+_counts|.+_n|.+Count|.+Counts)$/;
const MAX_FINDINGS = 5;

function isSmall(value: unknown, min: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value < min;
}

/** Where the small counts of a JSON document are (at most a few), e.g. `byAge[2].count = 3`. */
export function smallCellsInJson(doc: unknown, min: number): string[] {
  const found: string[] = [];
  const walk = (node: unknown, where: string, countish: boolean, depth: number) => {
    if (found.length >= MAX_FINDINGS || depth > 64) return;
    if (Array.isArray(node)) {
      node.forEach((v, i) => walk(v, `${where}[${i}]`, countish, depth + 1));
      return;
    }
    if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) walk(v, where ? `${where}.${k}` : k, COUNT_NAME.test(k), depth + 1);
      return;
    }
    if (countish && isSmall(node, min)) found.push(`${where} = ${String(node)}`);
  };
  walk(doc, '', false, 0);
  return found;
}

/** Splits one CSV line (RFC 4180 quotes). */
function splitCsvLine(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',' || c === ';' || c === '\t') {
      cells.push(cell);
      cell = '';
    } else cell += c;
  }
  cells.push(cell);
  return cells.map((c) => c.trim());
}

/** Where the small counts of a CSV table are: `row 3, column count = 2`. */
export function smallCellsInCsv(text: string, min: number): string[] {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  const header = lines[0] === undefined ? [] : splitCsvLine(lines[0]);
  const countColumns = header.flatMap((h, i) => (COUNT_NAME.test(h) || COUNT_NAME.test(h.toLowerCase()) ? [i] : []));
  const found: string[] = [];
  for (let r = 1; r < lines.length && found.length < MAX_FINDINGS; r++) {
    const cells = splitCsvLine(lines[r]!);
    for (const i of countColumns) {
      const raw = cells[i];
      if (raw !== undefined && /^[0-9]{1,15}$/.test(raw) && isSmall(Number(raw), min))
        found.push(`row ${r + 1}, column ${header[i]} = ${raw}`);
    }
  }
  return found;
}

/** Small cells of an output file by its type; null when the file is not a count table format. */
export function smallCells(name: string, text: string, min: number): string[] | null {
  const ext = name.toLowerCase().split('.').pop();
  if (ext === 'csv' || ext === 'tsv') return smallCellsInCsv(text, min);
  if (ext === 'json') {
    try {
      return smallCellsInJson(JSON.parse(text) as unknown, min);
    } catch {
      return ['the file is not valid JSON, so its counts cannot be checked'];
    }
  }
  return null;
}
