import { afterAll } from 'vitest';
import { removeTempDirs } from './temp-dirs.js';

// Registered first, so it runs after the test file's own afterAll hooks (hooks run as a stack):
// the site clients are closed and their containers removed by then.
afterAll(() => {
  removeTempDirs();
});
