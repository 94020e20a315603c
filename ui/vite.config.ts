import path from 'node:path';
import { defineConfig } from 'vite';

// The dashboard is served by the registry at /ui/ from dist/ui. Everything it needs is bundled:
// no CDN, no web fonts, no inline scripts or styles (the registry's CSP forbids them).
export default defineConfig({
  root: __dirname,
  base: '/ui/',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: path.join(__dirname, '..', 'dist', 'ui'),
    emptyOutDir: true,
    // data: URLs would be blocked by the CSP (img-src 'self'); keep every asset a file.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
});
