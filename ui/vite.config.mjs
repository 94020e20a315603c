import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = path.dirname(fileURLToPath(import.meta.url));

// The dashboard is served by the registry at /ui/ from dist/ui. Everything it needs is bundled:
// no CDN, no web fonts, no inline scripts or styles (the registry's CSP forbids them).
export default defineConfig({
  root: here,
  base: '/ui/',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: path.join(here, '..', 'dist', 'ui'),
    emptyOutDir: true,
    // data: URLs would be blocked by the CSP (img-src 'self'); keep every asset a file.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
});
