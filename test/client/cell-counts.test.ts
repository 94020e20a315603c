import { describe, expect, it } from 'vitest';
import { smallCells, smallCellsInCsv, smallCellsInJson } from '../../client/policy/cell-counts.js';

describe('small cells in count tables', () => {
  it('finds counts between 1 and the minimum in count columns of a CSV, not zero and not other columns', () => {
    const csv = 'age,count,mean_n\n40,3,7\n50,0,25\n60,"12",2\n';
    expect(smallCellsInCsv(csv, 10)).toEqual([
      'row 2, column count = 3',
      'row 2, column mean_n = 7',
      'row 4, column mean_n = 2',
    ]);
    expect(smallCellsInCsv('age;N\n40;4\n', 5)).toEqual(['row 2, column N = 4']);
  });

  it('finds small counts anywhere in JSON under count-like names, including arrays of counts', () => {
    const doc = { version: 1, patients: 400, byAge: [{ n: 12 }, { n: 4 }], counts: [50, 2], deathCount: 0 };
    expect(smallCellsInJson(doc, 10)).toEqual(['byAge[1].n = 4', 'counts[1] = 2']);
  });

  it('treats other file types as not count tables and unparseable JSON as a finding', () => {
    expect(smallCells('notes.txt', 'count 1', 10)).toBeNull();
    expect(smallCells('x.json', '{"n": 3', 10)).toEqual([
      'the file is not valid JSON, so its counts cannot be checked',
    ]);
  });
});
