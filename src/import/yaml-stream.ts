// How the imported objects are written: one multi-document YAML stream, for `kubectl apply -f` and `--endpoints`.
import { stringify } from 'yaml';
import type { ImportedConfig } from './distribution-config.ts';

/**
 * The objects as one multi-document YAML stream ('' for none). Strings are quoted as YAML 1.1 needs: kubectl reads
 * the stream with a YAML 1.1 parser, where an unquoted `yes` or `0123` (a header value, say) would be no string.
 */
export function toYamlStream(objects: ImportedConfig['objects']): string {
  return objects.map((object) => stringify(object, { version: '1.1', lineWidth: 0 })).join('---\n');
}
