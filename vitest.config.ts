import { defineConfig } from 'vitest/config';

// Tests run against the TypeScript sources of sibling packages (the "source"
// export condition), so a unit test never needs a build first. Integration
// tests that spawn the CLI use the built dist/ (the test command builds).
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
