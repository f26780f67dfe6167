// Kubernetes names for what a Distribution config only names loosely: endpoint names become DNS-1123 labels
// (lower-case letters, digits and '-', at most 63: valid as any object's name and as a label value, with room for
// the `-headers` suffix of their Secret), header names become Secret keys. Two names that come out the same are
// told apart by a numeric suffix; the caller reports every change.

/** The longest DNS-1123 label. */
export const MAX_LABEL = 63;
// A Secret's data key, as our spec's secretKeyRef.key pattern (spec-schema.ts) takes it.
const SECRET_KEY = /^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$/;

/** `text` as a DNS-1123 label: accents dropped, lower-cased, each run of other characters as one '-', trimmed to 63; '' when nothing is left. */
export function toLabel(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/\p{M}/gu, '') // combining marks: "é" → "e"
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, MAX_LABEL)
    .replace(/-+$/, '');
}

/** A header name as a Secret key: characters a key cannot hold (a header token may have `!#$%&'*+^`|~`) as '_'. */
export function toSecretKey(headerName: string): string {
  const key = headerName.replace(/[^-._a-zA-Z0-9]/g, '_');
  return SECRET_KEY.test(key) && key !== '.' && key !== '..' ? key : key.replaceAll('.', '_');
}

/** Hands out unique names: the first to ask for one gets it, later ones get `-2`, `-3`… (within `maxLength`). Single-use per namespace of names. */
export class UniqueNames {
  readonly #taken = new Set<string>();
  readonly #maxLength: number;

  constructor(maxLength = MAX_LABEL) {
    this.#maxLength = maxLength;
  }

  /** `wanted` if free, else the first free `wanted-N` (N from 2), shortened so that it fits; the name is then taken. */
  take(wanted: string): string {
    let name = wanted;
    for (let n = 2; this.#taken.has(name); n++) {
      const suffix = `-${n}`;
      name = `${wanted.slice(0, this.#maxLength - suffix.length).replace(/[-.]+$/, '')}${suffix}`;
    }
    this.#taken.add(name);
    return name;
  }
}
