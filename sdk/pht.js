#!/usr/bin/env node
// The `pht` command: runs the compiled CLI (`npm run build` puts it in dist/).
let cli;
try {
  cli = require('../dist/sdk/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/sdk/cli/main.js')) {
    process.stderr.write('pht: the CLI is not built yet; run "npm run build" in the pht package\n');
    process.exit(3);
  }
  throw e;
}
cli.run();
