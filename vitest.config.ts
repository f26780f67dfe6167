import { defineConfig } from 'vitest/config';

// Integration suites start real processes (kube-apiserver, etcd, the registry); they get longer timeouts
// in their own files. Files run in parallel workers, tests inside a file run in order.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
