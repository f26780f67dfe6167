/**
 * `registry-notifier import-config FILE [--namespace NS]` (api.md §10): reads a Distribution config.yml (`-` for
 * stdin) and prints its notification endpoints as NotificationEndpoints and header Secrets, a multi-document YAML
 * stream on stdout; what it cannot carry over goes to stderr, one line each.
 */
import { readFileSync } from 'node:fs';
import type { Command } from './config.ts';
import { ConfigImportError, importDistributionConfig } from './import/distribution-config.ts';
import { toYamlStream } from './import/yaml-stream.ts';

/** Runs the command; returns the exit code (0 converted, possibly with notes; 2 the file cannot be read as a configuration). */
export function importConfig(command: Extract<Command, { command: 'import-config' }>): number {
  const { file, namespace } = command;
  const shown = file === '-' ? 'stdin' : file;
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    process.stderr.write(`registry-notifier: import-config: cannot read ${shown}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}\n`);
    return 2;
  }
  let imported;
  try {
    imported = importDistributionConfig(text, namespace === undefined ? {} : { namespace });
  } catch (error) {
    if (!(error instanceof ConfigImportError)) throw error;
    process.stderr.write(`registry-notifier: import-config: ${shown}: ${error.message}\n`);
    return 2;
  }
  for (const note of imported.notes) process.stderr.write(`${shown}: ${note.replace(/[\r\n]+/g, ' ')}\n`);
  process.stdout.write(toYamlStream(imported.objects));
  return 0;
}
