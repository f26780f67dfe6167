#!/usr/bin/env node
/**
 * The `registry-notifier` command: parses the command line once (config.ts), then runs the command.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid configuration (one line on stderr).
 */
import { checkServeConfig, parseCommand, UsageError, type Command } from './config.ts';
import { VERSION } from './version.ts';

async function run(command: Command): Promise<number> {
  switch (command.command) {
    case 'help':
      process.stdout.write(`${command.text}\n`);
      return 0;
    case 'version':
      process.stdout.write(`registry-notifier ${VERSION}\n`);
      return 0;
    case 'demo': {
      const { runDemo } = await import('./demo.ts');
      return runDemo(command.logLevel, command.rounds);
    }
    case 'replay': {
      const { replay } = await import('./replay.ts');
      return replay(command);
    }
    case 'serve': {
      checkServeConfig(command);
      // Loaded only here: the server's modules (the Kubernetes client among them) take seconds to load, which
      // `version`, `--help` and a usage error should not pay.
      const [{ createLogger }, { startServer }] = await Promise.all([import('./log.ts'), import('./serve.ts')]);
      const logger = createLogger(command.logLevel);
      const server = await startServer(command, logger);
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      await server.shutdown();
      return 0;
    }
  }
}

try {
  process.exitCode = await run(parseCommand(process.argv.slice(2)));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`registry-notifier: ${error.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`registry-notifier: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
