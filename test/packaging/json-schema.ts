// The subset of JSON Schema (draft-07) that charts/registry-notifier/values.schema.json uses, for checking values
// files the way Helm does before rendering. No validator library is installed, so this one refuses any keyword it
// does not implement: a schema can never silently rely on a check that is not made here.

/** A JSON Schema object (draft-07 subset). */
export interface Schema {
  [keyword: string]: unknown;
}

/** One violation: where (`$.image.tag`) and what. */
export interface SchemaError {
  path: string;
  message: string;
}

const IMPLEMENTED = new Set([
  'type', 'properties', 'additionalProperties', 'required', 'enum', 'minimum', 'maximum', 'minLength', 'maxLength',
  'pattern', 'items', 'uniqueItems', '$ref',
]);
const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description', 'definitions', 'default', 'examples']);

/** Validates `value` against `schema` (with `root` for `$ref: #/definitions/...`); returns every violation. */
export function validate(value: unknown, schema: Schema, root: Schema = schema, path = '$'): SchemaError[] {
  for (const keyword of Object.keys(schema)) {
    if (!IMPLEMENTED.has(keyword) && !ANNOTATIONS.has(keyword)) throw new Error(`${path}: schema keyword "${keyword}" is not implemented by this checker`);
  }
  if (typeof schema.$ref === 'string') return validate(value, resolve(root, schema.$ref), root, path);
  const errors: SchemaError[] = [];
  const fail = (message: string, at = path): void => void errors.push({ path: at, message });

  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((type) => hasType(value, type))) {
      fail(`expected ${types.join(' or ')}, got ${typeName(value)}`);
      return errors; // the remaining keywords assume the type
    }
  }
  if (schema.enum !== undefined && !(schema.enum as unknown[]).some((allowed) => allowed === value)) {
    fail(`${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) fail(`${value} is below the minimum ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) fail(`${value} is above the maximum ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && [...value].length < schema.minLength) fail(`shorter than ${schema.minLength} characters`);
    if (typeof schema.maxLength === 'number' && [...value].length > schema.maxLength) fail(`longer than ${schema.maxLength} characters`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) fail(`${JSON.stringify(value)} does not match ${schema.pattern}`);
  }
  if (Array.isArray(value)) {
    if (schema.items !== undefined) value.forEach((item, i) => errors.push(...validate(item, schema.items as Schema, root, `${path}[${i}]`)));
    if (schema.uniqueItems === true) {
      const seen = value.map((item) => JSON.stringify(item));
      if (new Set(seen).size !== seen.length) fail('items are not unique');
    }
  }
  if (isObject(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) if (!(key in value)) fail(`"${key}" is required`);
    for (const [key, child] of Object.entries(value)) {
      const at = `${path}.${key}`;
      if (key in properties) errors.push(...validate(child, properties[key]!, root, at));
      else if (schema.additionalProperties === false) fail(`unknown key "${key}"`, at);
      else if (isObject(schema.additionalProperties)) errors.push(...validate(child, schema.additionalProperties, root, at));
    }
  }
  return errors;
}

function resolve(root: Schema, ref: string): Schema {
  const match = /^#\/definitions\/([^/]+)$/.exec(ref);
  const target = match ? (root.definitions as Record<string, Schema> | undefined)?.[match[1]!] : undefined;
  if (!target) throw new Error(`cannot resolve $ref ${ref}`);
  return target;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'null': return value === null;
    case 'boolean': return typeof value === 'boolean';
    case 'string': return typeof value === 'string';
    case 'number': return typeof value === 'number' && Number.isFinite(value);
    case 'integer': return typeof value === 'number' && Number.isInteger(value);
    case 'array': return Array.isArray(value);
    case 'object': return isObject(value);
    default: throw new Error(`unknown JSON Schema type "${type}"`);
  }
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number' && Number.isInteger(value)) return 'integer';
  return typeof value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
