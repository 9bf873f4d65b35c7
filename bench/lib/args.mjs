// Command-line parsing shared by the bench scripts: node:util parseArgs with `--help`, the `--` that
// `pnpm bench:x -- --runs 3` passes through, usage errors as one line plus the usage on stderr (exit 2), and
// integer options checked against a minimum.
import { parseArgs } from 'node:util';

/**
 * Parses process.argv for bench `name` with parseArgs `options` (a `help` flag is added). Exits 0 after printing
 * `usage` for --help, 2 on a bad flag. Returns the parsed values and `int(option, fallback, min)`.
 */
export function readBenchArgs(name, usage, options) {
  let parsed;
  try {
    const args = process.argv.slice(2);
    parsed = parseArgs({
      args: args[0] === '--' ? args.slice(1) : args,
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } },
      allowPositionals: false,
    });
  } catch (err) {
    process.stderr.write(`${name}: ${err.message}\n${usage}`);
    process.exit(2);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const int = (option, fallback, min) => {
    if (v[option] === undefined) return fallback;
    const n = Number(v[option]);
    if (!Number.isSafeInteger(n) || n < min) {
      process.stderr.write(`${name}: --${option} must be an integer >= ${min}, got ${JSON.stringify(v[option])}\n${usage}`);
      process.exit(2);
    }
    return n;
  };
  return { values: v, int };
}
