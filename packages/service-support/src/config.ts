/**
 * Readers for a service's environment variables. Each returns the fallback when the variable is unset
 * or empty, and throws a ConfigError naming the variable when it is set to something invalid.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

export type Env = Record<string, string | undefined>;

export function text(env: Env, name: string, fallback: string): string {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  return value;
}

export function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}

export function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

/** A URL with one of `protocols` (e.g. ['postgres:', 'postgresql:']). */
export function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const value = text(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    // The value is not shown: a malformed URL may still hold a password.
    throw new ConfigError(name, 'must be a URL, e.g. postgres://user:password@host:5432/database');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must start with ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  return value;
}

/** A comma-separated host:port list; empty when unset. */
export function nodeList(env: Env, name: string): string[] {
  const nodes = text(env, name, '')
    .split(',')
    .map((node) => node.trim())
    .filter((node) => node !== '');
  for (const node of nodes) {
    if (!/^[^\s:]+:\d{1,5}$/.test(node)) {
      throw new ConfigError(name, `must be host:port[,host:port...], got "${node}"`);
    }
  }
  return nodes;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** LOG_LEVEL: one of pino's levels. @defaultValue 'info' */
export function logLevel(env: Env): LogLevel {
  const value = text(env, 'LOG_LEVEL', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${value}"`);
  }
  return value as LogLevel;
}
