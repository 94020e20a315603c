import { describe, expect, it } from 'vitest';
import { integerOption, parseCommandLine, runCommandLine, UsageError } from '../../shared/command-line.js';

const spec = {
  usage: 'Usage: node thing [--port N] [--verbose] [FILE]',
  options: { port: 'value', verbose: 'boolean' },
  positionals: { max: 1 },
} as const;

function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  let seen: unknown = null;
  const code = runCommandLine(
    argv,
    spec,
    (args) => {
      seen = args;
      return 0;
    },
    { stdout: (t) => out.push(t), stderr: (t) => err.push(t) },
  );
  return code.then((c) => ({ code: c, stdout: out.join(''), stderr: err.join(''), seen }));
}

describe('the strict command-line parser', () => {
  it('reads value options in both spellings, boolean options and positionals', () => {
    const a = parseCommandLine(['--port', '5001', '--verbose', 'f.json'], spec);
    expect(a.values).toEqual({ port: '5001', verbose: true });
    expect(a.positionals).toEqual(['f.json']);
    expect(parseCommandLine(['--port=5001'], spec).values.port).toBe('5001');
  });

  it.each([
    [['--prot', '5001'], 'unknown option --prot'],
    [['-x'], 'unknown option -x'],
    [['--verbose=yes'], 'option --verbose takes no value'],
    [['--port'], 'option --port needs a value'],
    [['--port', '--verbose'], 'option --port needs a value'],
    [['a', 'b'], 'too many arguments: "b"'],
  ])('refuses %j with a precise message', (argv, message) => {
    expect(() => parseCommandLine(argv, spec)).toThrow(new UsageError(message));
  });

  it('refuses positionals when the program takes none', () => {
    expect(() => parseCommandLine(['serve'], { usage: 'u', options: {} })).toThrow('unexpected argument "serve"');
  });

  it('runCommandLine: exit 2 with the error and the usage line on stderr, and the handler never runs', async () => {
    const r = await run(['--prot', '5001']);
    expect(r).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: unknown option --prot\nUsage: node thing [--port N] [--verbose] [FILE]',
      seen: null,
    });
  });

  it('runCommandLine: --help and -h print the usage on stdout with exit 0', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run([flag]);
      expect(r).toMatchObject({ code: 0, stdout: spec.usage, stderr: '', seen: null });
    }
  });

  it('runCommandLine: a UsageError from the handler is reported like a refused option', async () => {
    const err: string[] = [];
    const code = await runCommandLine(['--port', 'http'], spec, (args) => integerOption(args, 'port', 0, 65535), {
      stdout: () => undefined,
      stderr: (t) => err.push(t),
    });
    expect(code).toBe(2);
    expect(err.join('')).toMatch(/^error: --port must be an integer from 0 to 65535, got "http"\nUsage: /);
  });
});
