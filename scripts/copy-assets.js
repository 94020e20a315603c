// tsc compiles TypeScript only; the SQL migrations (SQLite's, and PostgreSQL's in postgres/) travel beside the compiled store module.
const fs = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..');
const from = path.join(root, 'master/store/migrations');
const to = path.join(root, 'dist/master/store/migrations');
fs.mkdirSync(to, { recursive: true });
for (const sub of ['', 'postgres']) {
  fs.mkdirSync(path.join(to, sub), { recursive: true });
  for (const f of fs.readdirSync(path.join(from, sub)))
    if (f.endsWith('.sql')) fs.copyFileSync(path.join(from, sub, f), path.join(to, sub, f));
}
