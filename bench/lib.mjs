// What the bench scripts share: command-line options, a clock and percentiles.

const argv = process.argv.slice(2);

/** The value after --name on the command line, or def. */
export function opt(name, def) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
}

/** True when --name is on the command line. */
export const flag = (name) => argv.includes(`--${name}`);

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** The p-th percentile (nearest rank) of samples. */
export function pct(samples, p) {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
