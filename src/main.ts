#!/usr/bin/env node
/**
 * The `registry-notifier` command: parses the command line once (config.ts), then runs the command.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid configuration (one line on stderr).
 */
import { constants } from 'node:os';
import { checkServeConfig, parseCommand, UsageError, type Command } from './config.ts';
import { VERSION } from './version.ts';

// The signals that stop `serve`; see run() for what a second one does.
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

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
    case 'resume': {
      const { resume } = await import('./resume.ts');
      return resume(command);
    }
    case 'migrate': {
      const { migrateCommand } = await import('./migrate.ts');
      return migrateCommand(command);
    }
    case 'import-config': {
      const { importConfig } = await import('./import-config.ts');
      return importConfig(command);
    }
    case 'serve': {
      checkServeConfig(command);
      // Loaded only here: the server's modules (the Kubernetes client among them) take seconds to load, which
      // `version`, `--help` and a usage error should not pay.
      const [{ createLogger }, { startServer }] = await Promise.all([import('./log.ts'), import('./serve.ts')]);
      const logger = createLogger(command.logLevel);
      const server = await startServer(command, logger);
      // A crash still says what it leaves behind (in memory: lost; with a journal: sent at the next start).
      process.once('uncaughtException', (error) => {
        logger.fatal({ err: error, pending: server.pendingByEndpoint() }, 'crashed');
        process.exit(1);
      });
      // SIGHUP (the terminal went away) stops the process like SIGTERM and SIGINT: configuration is followed live,
      // so there is nothing to reload. The first signal drains the queues for up to --shutdown-grace; another
      // one during the drain cuts it short. Either way the 'stopped' line says what was left, per endpoint.
      const first = await new Promise<NodeJS.Signals>((resolve) => {
        for (const signal of STOP_SIGNALS) process.once(signal, () => resolve(signal));
      });
      logger.info({ signal: first }, 'signal received');
      let forced: NodeJS.Signals | undefined;
      for (const signal of STOP_SIGNALS) {
        process.on(signal, () => {
          if (forced) return;
          forced = signal;
          logger.warn({ signal, pending: server.pendingByEndpoint() }, 'second signal: stopping without draining');
          server.stopDraining();
        });
      }
      await server.shutdown();
      return forced ? 128 + constants.signals[forced] : 0;
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
