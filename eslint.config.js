// Lint rules on top of what `tsc --noEmit` (strict, noUncheckedIndexedAccess, no unused locals) already checks:
// typescript-eslint's recommended set, plus the few house rules the style guide asks for.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'coverage/', 'charts/', 'deploy/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // Errors are classes with a stable code; never throw strings.
      'no-throw-literal': 'error',
      'prefer-promise-reject-errors': 'error',
      eqeqeq: ['error', 'always'],
      'no-console': ['error', { allow: ['warn', 'error'] }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // tsc reports unused locals and parameters already (noUnusedLocals, noUnusedParameters).
      '@typescript-eslint/no-unused-vars': 'off',
    },
  },
  {
    // Tests and benchmarks print measurements; the CLI writes to stdout through process.stdout.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
);
