// Packs the researcher's part of PHT, the SDK (`require('pht')`) and the `pht` command, into one
// npm tarball that installs without any network: only the compiled modules the SDK and CLI reach,
// their type declarations, and their few runtime dependencies bundled inside (no native module, no
// install script). The registry's and site's own dependencies (SQLite, Docker, Express) stay out.
//
//   npm run build && node scripts/pack-sdk.js [--out DIR]     (or: npm run pack:sdk)
//   → DIR/pht-<version>.tgz; then, anywhere: npm install ./pht-<version>.tgz && npx pht --help
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const { builtinModules } = require('node:module');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const ENTRIES = ['dist/sdk/index.js', 'dist/sdk/cli/main.js'];
const USAGE = 'Usage: node scripts/pack-sdk.js [--out DIR]   (npm run build first)';

function main(argv) {
  const { runCommandLine } = require('../dist/shared/command-line.js');
  return runCommandLine(argv, { usage: USAGE, options: { out: 'value' } }, (args) => pack(args.values.out));
}

function pack(outOption) {
  const out = path.resolve(outOption ?? ROOT);
  for (const entry of ENTRIES)
    if (!fs.existsSync(path.join(ROOT, entry))) {
      console.error(`error: ${entry} is missing; run "npm run build" first`);
      return 1;
    }
  const { files, packages } = moduleClosure(ENTRIES);
  const bundled = dependencyClosure(packages);
  const root = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-sdk-pack-'));
  try {
    for (const file of files) {
      copy(file, file);
      const types = file.replace(/\.js$/, '.d.ts');
      if (fs.existsSync(path.join(ROOT, types))) copy(types, types);
    }
    copy('sdk/pht.js', 'sdk/pht.js');
    copy('sdk/README.md', 'README.md');
    for (const name of bundled) copy(path.join('node_modules', name), path.join('node_modules', name));
    const direct = [...packages].sort();
    const manifest = {
      name: root.name,
      version: root.version,
      description: 'Personal Health Train: the researcher SDK and the pht command line',
      license: root.license,
      engines: root.engines,
      main: 'dist/sdk/index.js',
      types: 'dist/sdk/index.d.ts',
      bin: { pht: 'sdk/pht.js' },
      dependencies: Object.fromEntries(direct.map((name) => [name, root.dependencies[name]])),
      bundleDependencies: direct,
    };
    fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
    fs.mkdirSync(out, { recursive: true });
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', out], {
        cwd: stage,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    console.log(path.join(out, packed[0].filename));
    return 0;
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }

  function copy(from, to) {
    fs.cpSync(path.join(ROOT, from), path.join(stage, to), { recursive: true });
  }
}

/** The compiled files reachable from `entries` through relative requires, and the packages they require. */
function moduleClosure(entries) {
  const files = new Set();
  const packages = new Set();
  const queue = [...entries];
  while (queue.length) {
    const file = queue.pop();
    if (files.has(file)) continue;
    files.add(file);
    const source = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const [, spec] of source.matchAll(/require\("([^"]+)"\)/g)) {
      if (spec.startsWith('.')) {
        const target = path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), spec));
        queue.push(target.endsWith('.js') ? target : `${target}.js`);
      } else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
      }
    }
  }
  return { files: [...files].sort(), packages };
}

/** The installed packages `names` need at run time (their dependencies, transitively), as top-level folder names. */
function dependencyClosure(names) {
  const topLevel = new Set();
  const seen = new Set();
  const queue = [...names].map((name) => path.join(ROOT, 'node_modules', name));
  while (queue.length) {
    const dir = queue.pop();
    if (seen.has(dir)) continue;
    seen.add(dir);
    if (!fs.existsSync(dir)) throw new Error(`${path.relative(ROOT, dir)} is not installed; run "npm ci" first`);
    // A top-level package is bundled; a nested one travels inside its parent's folder.
    const rel = path.relative(path.join(ROOT, 'node_modules'), dir);
    if (!rel.includes(`${path.sep}node_modules${path.sep}`)) topLevel.add(rel);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      const found = resolvePackage(dir, dep);
      if (found) queue.push(found);
      else if (pkg.dependencies?.[dep]) throw new Error(`${dep} (needed by ${rel}) is not installed`);
    }
  }
  return [...topLevel].sort();
}

/** Where Node would find package `name` from inside `dir`: the nearest node_modules up to the root's. */
function resolvePackage(dir, name) {
  for (let at = dir; at.startsWith(ROOT); at = path.dirname(at)) {
    const candidate = path.join(at, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (at === ROOT) break;
  }
  return null;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e) => {
    console.error(`error: ${e.message}`);
    process.exitCode = 1;
  },
);
