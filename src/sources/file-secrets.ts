import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { SecretReader } from './endpoint-config.ts';

/**
 * Standalone Secrets: `secretKeyRef {name: N, key: K}` is the file `<dir>/N/K`, the layout Kubernetes uses
 * when it mounts a Secret, so one YAML works in both modes. Reads fresh on every call (rotation is picked up
 * on the next reload).
 */
export class FileSecretReader implements SecretReader {
  #dir: string | undefined;

  constructor(dir: string | undefined) {
    this.#dir = dir;
  }

  read(_namespace: string | undefined, name: string): ReadonlyMap<string, Buffer> | undefined {
    if (this.#dir === undefined) return undefined;
    const dir = join(this.#dir, name);
    try {
      if (!statSync(dir).isDirectory()) return undefined;
      const entries = new Map<string, Buffer>();
      // Kubernetes mounts keys as symlinks into a `..data` directory; dot entries are its bookkeeping.
      for (const key of readdirSync(dir).filter((k) => !k.startsWith('.'))) {
        const file = join(dir, key);
        if (statSync(file).isFile()) entries.set(key, readFileSync(file));
      }
      return entries;
    } catch {
      return undefined;
    }
  }
}
