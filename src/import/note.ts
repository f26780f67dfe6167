// What the import reports on stderr: one line per thing it could not carry over or changed on the way.

/** Reports one thing about the field at `path` (relative to the caller's scope); the message never holds a header value or URL credentials. */
export type Note = (path: string, message: string) => void;

/** A Note that reports under `scope`: `scoped(note, 'ignore')('actions', …)` reports `ignore.actions`. */
export function scoped(note: Note, scope: string): Note {
  return (path, message) => note(path === '' || path.startsWith('[') ? `${scope}${path}` : `${scope}.${path}`, message);
}

/** How a YAML value is described in a note: `a mapping`, `a list`, `a string`, `a whole number`, `a number`, `a boolean`, `null`. */
export function yamlKind(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'object': return 'a mapping';
    case 'bigint': return 'a whole number';
    case 'number': return Number.isInteger(value) ? 'a whole number' : 'a number';
    default: return `a ${typeof value}`;
  }
}
