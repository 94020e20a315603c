// The project's lint, run by `npm run lint` (and so before `npm test`), with Prettier for
// formatting and tsc for types. Two jobs: catch promises nobody awaits or that are handed where
// a callback's result is ignored (type-aware typescript-eslint), and keep the architecture:
//   shared/       imports no program (only itself and packages);
//   master/, client/, fileservice/ import shared/ and never one another;
//   sdk/          imports only shared/ (it is packed and installed on researchers' machines);
// and no import cycles anywhere. Side-effect (`import './x.js'`), dynamic and require() imports
// count as much as named ones. Tests, demo, bench and scripts may import anything.
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

const PROGRAMS = ['master', 'client', 'fileservice', 'sdk'];
const OUTSIDE_PROGRAMS = ['demo', 'bench', 'test', 'algorithms', 'scripts'];

/** Each program's folder may import only these top-level folders of the repository. */
const ALLOWED = {
  shared: ['shared'],
  master: ['master', 'shared'],
  client: ['client', 'shared'],
  fileservice: ['fileservice', 'shared'],
  sdk: ['sdk', 'shared'],
  // The dashboard (bundled for the browser) uses the wire shapes and names only.
  ui: ['ui', 'shared'],
};

const zones = Object.entries(ALLOWED).map(([target, allowed]) => ({
  target: `./${target}`,
  from: [...PROGRAMS, 'shared', ...OUTSIDE_PROGRAMS].filter((dir) => !allowed.includes(dir)).map((dir) => `./${dir}`),
  message: `${target}/ may import only ${allowed.join(', ')}/ (see eslint.config.mjs).`,
}));

const importRules = {
  'import-x/no-restricted-paths': ['error', { zones }],
  'import-x/no-cycle': ['error', { ignoreExternal: true }],
};

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.d.ts', 'data/**', '.pht/**'],
  },
  {
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
      // no-cycle reads the imported files too: with this parser, or it sees no imports in them.
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts', '.tsx'] },
      'import-x/extensions': ['.ts', '.tsx', '.js', '.mjs', '.cjs'],
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      ...importRules,
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    // Entry shims and build scripts: plain CommonJS, not part of the TypeScript project.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', ecmaVersion: 2023 },
    rules: importRules,
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module' },
  },
);
