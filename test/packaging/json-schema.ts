// Checks values files against charts/registry-notifier/values.schema.json the way Helm does before rendering,
// with ajv (JSON Schema draft-07, strict: an unknown keyword in the schema is an error, not a silent pass).
// Only the wording of the violations is ours: `$.image.tga: unknown key "tga"`.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/** A JSON Schema object (draft-07). */
export interface Schema {
  [keyword: string]: unknown;
}

/** One violation: where (`$.image.tag`) and what. */
export interface SchemaError {
  path: string;
  message: string;
}

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
const compiled = new WeakMap<Schema, ValidateFunction>();

/** Validates `value` against `schema`; returns every violation (none when valid). */
export function validate(value: unknown, schema: Schema): SchemaError[] {
  let check = compiled.get(schema);
  if (!check) {
    check = ajv.compile(schema);
    compiled.set(schema, check);
  }
  return check(value) ? [] : (check.errors ?? []).map(describe);
}

function describe(error: ErrorObject): SchemaError {
  const path = `$${error.instancePath
    .split('/')
    .slice(1)
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((segment) => (/^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`))
    .join('')}`;
  const params = error.params as Record<string, unknown>;
  const shown = JSON.stringify(error.data);
  switch (error.keyword) {
    case 'additionalProperties':
      return { path: `${path}.${String(params.additionalProperty)}`, message: `unknown key "${String(params.additionalProperty)}"` };
    case 'type':
      return { path, message: `expected ${String(params.type)}, got ${kindOf(error.data)}` };
    case 'enum':
      return { path, message: `${shown} is not one of ${JSON.stringify(params.allowedValues)}` };
    case 'pattern':
      return { path, message: `${shown} does not match ${String(params.pattern)}` };
    case 'maximum':
      return { path, message: `${shown} is above the maximum ${String(params.limit)}` };
    case 'minimum':
      return { path, message: `${shown} is below the minimum ${String(params.limit)}` };
    case 'uniqueItems':
      return { path, message: 'items are not unique' };
    case 'required':
      return { path, message: `"${String(params.missingProperty)}" is required` };
    default:
      return { path, message: error.message ?? error.keyword };
  }
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}
