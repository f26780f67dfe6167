// Values files as Helm sees them: the chart's values.yaml merged with overrides, and the check that every value of
// values.yaml is documented (cert-manager style: prose above it, with an example).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CHART } from './render.ts';
import type { Schema } from './json-schema.ts';

export const VALUES_TEXT = readFileSync(join(CHART, 'values.yaml'), 'utf8');
export const SCHEMA = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Schema;

/** The chart's default values. */
export function defaultValues(): Record<string, unknown> {
  return parse(VALUES_TEXT) as Record<string, unknown>;
}

/** Helm's merge of values: maps merge key by key, anything else (lists included) is replaced by the override. */
export function mergeValues(base: Record<string, unknown>, override: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const current = out[key];
    out[key] = isMap(value) && isMap(current) ? mergeValues(current, value) : value;
  }
  return out;
}

/**
 * Dotted paths of the values the schema defines as leaves (no inline `properties`) whose line in values.yaml has no
 * comment block right above it, or whose comment block gives no example.
 */
export function undocumentedValues(text: string, schema: Schema): string[] {
  const lines = text.split('\n');
  const lineOf = new Map<string, number>();
  const stack: { indent: number; key: string }[] = [];
  lines.forEach((line, i) => {
    const match = /^( *)([A-Za-z][\w-]*):(?: |$)/.exec(line);
    if (!match) return;
    const indent = match[1]!.length;
    while (stack.length > 0 && stack.at(-1)!.indent >= indent) stack.pop();
    stack.push({ indent, key: match[2]! });
    lineOf.set(stack.map((s) => s.key).join('.'), i);
  });
  const problems: string[] = [];
  const walk = (node: Schema, prefix: string): void => {
    for (const [key, child] of Object.entries((node.properties ?? {}) as Record<string, Schema>)) {
      const path = prefix ? `${prefix}.${key}` : key;
      if (child.properties) {
        walk(child, path);
        continue;
      }
      const at = lineOf.get(path);
      if (at === undefined) {
        problems.push(`${path}: in the schema but not in values.yaml`);
        continue;
      }
      const comment: string[] = [];
      for (let j = at - 1; j >= 0 && /^\s*#/.test(lines[j]!); j--) comment.unshift(lines[j]!);
      if (comment.length === 0) problems.push(`${path}: no comment above it`);
      else if (!/Example/.test(comment.join('\n'))) problems.push(`${path}: its comment gives no example`);
    }
  };
  walk(schema, '');
  return problems;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
