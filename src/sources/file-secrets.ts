import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { SecretReader } from './endpoint-config.ts';

/** Prefix of the environment variables that hold standalone secret values. */
export const SECRET_ENV_PREFIX = 'REGISTRY_NOTIFIER_SECRET_';

/**
 * The environment variable that holds `secretKeyRef {name, key}` in standalone mode:
 * `REGISTRY_NOTIFIER_SECRET_<NAME>_<KEY>`, upper-cased, every other character than A-Z and 0-9 as `_`
 * (`receiver-token`/`token` → `REGISTRY_NOTIFIER_SECRET_RECEIVER_TOKEN_TOKEN`).
 */
export function secretEnvName(name: string, key: string): string {
  const norm = (text: string): string => text.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  return `${SECRET_ENV_PREFIX}${norm(name)}_${norm(key)}`;
}

/** A Secret's data whose keys not found among the files are looked up in the environment. */
class SecretData extends Map<string, Buffer> {
  #name: string;
  #env: Readonly<Record<string, string>>;

  constructor(name: string, env: Readonly<Record<string, string>>) {
    super();
    this.#name = name;
    this.#env = env;
  }

  override get(key: string): Buffer | undefined {
    const value = super.get(key) ?? this.#env[secretEnvName(this.#name, key)];
    return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  }
}

/**
 * Standalone Secrets: `secretKeyRef {name: N, key: K}` is the file `<dir>/N/K`, the layout Kubernetes uses
 * when it mounts a Secret, so one YAML works in both modes; a key with no file there comes from the
 * environment variable `secretEnvName(N, K)`. Reads fresh on every call (rotation is picked up on the next
 * reload).
 */
export class FileSecretReader implements SecretReader {
  #dir: string | undefined;
  #env: Readonly<Record<string, string>>;

  /** `env` holds the `REGISTRY_NOTIFIER_SECRET_*` variables, captured once by the configuration. */
  constructor(dir: string | undefined, env: Readonly<Record<string, string>> = {}) {
    this.#dir = dir;
    this.#env = env;
  }

  read(_namespace: string | undefined, name: string): ReadonlyMap<string, Buffer> | undefined {
    const data = new SecretData(name, this.#env);
    const fromFiles = this.#files(name, data);
    const prefix = secretEnvName(name, '');
    const fromEnv = Object.keys(this.#env).some((variable) => variable.startsWith(prefix));
    return fromFiles || fromEnv ? data : undefined;
  }

  /** Reads `<dir>/name/*` into `data`; whether that directory exists. */
  #files(name: string, data: Map<string, Buffer>): boolean {
    if (this.#dir === undefined) return false;
    const dir = join(this.#dir, name);
    try {
      if (!statSync(dir).isDirectory()) return false;
      // Kubernetes mounts keys as symlinks into a `..data` directory; dot entries are its bookkeeping.
      for (const key of readdirSync(dir).filter((k) => !k.startsWith('.'))) {
        const file = join(dir, key);
        if (statSync(file).isFile()) data.set(key, readFileSync(file));
      }
      return true;
    } catch {
      return false;
    }
  }
}
