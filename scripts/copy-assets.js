// tsc compiles TypeScript only; the SQL migrations travel beside the compiled store module.
const fs = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..');
const from = path.join(root, 'master/store/migrations');
const to = path.join(root, 'dist/master/store/migrations');
fs.mkdirSync(to, { recursive: true });
for (const f of fs.readdirSync(from)) if (f.endsWith('.sql')) fs.copyFileSync(path.join(from, f), path.join(to, f));
