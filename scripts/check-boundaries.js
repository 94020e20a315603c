// The architecture, checked mechanically: shared/ imports nothing else of the repo; master/,
// client/, fileservice/ and sdk/ import shared/ and never each other (tests and the demo may
// import anything). Run by `npm test` (pretest) and `npm run lint`.
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const rules = {
  shared: ['shared'],
  master: ['master', 'shared'],
  client: ['client', 'shared'],
  fileservice: ['fileservice', 'shared'],
  sdk: ['sdk', 'shared'],
  ui: ['ui', 'shared'],
};

const problems = [];
function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (/\.(ts|js)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) check(full);
  }
}
function check(file) {
  const source = fs.readFileSync(file, 'utf8');
  const top = path.relative(root, file).split(path.sep)[0];
  const pattern =
    /(?:import|export)[^'"]*?from\s*['"](\.[^'"]+)['"]|require\(\s*['"](\.[^'"]+)['"]\s*\)|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(pattern)) {
    const spec = m[1] ?? m[2] ?? m[3];
    const target = path.relative(root, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
    // Entry shims (master/index.js, client/index.js, sdk/pht.js) load the compiled build.
    if (target === 'dist' && /(index\.js|pht\.js)$/.test(file)) continue;
    if (!rules[top].includes(target))
      problems.push(`${path.relative(root, file)} imports ${spec} (${top}/ may import only ${rules[top].join(', ')})`);
  }
}
for (const dir of Object.keys(rules)) if (fs.existsSync(path.join(root, dir))) walk(path.join(root, dir));
if (problems.length) {
  console.error(`architecture boundaries violated:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
