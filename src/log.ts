import { pino, type Logger } from 'pino';

/**
 * JSON logs on stdout (or `destination`). Values that could carry secrets are redacted by path as a second
 * line of defence; the code never logs header values, tokens or URL credentials in the first place.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { service: 'registry-notifier' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: ['headers', '*.headers', 'token', '*.token', 'authorization', '*.authorization'], censor: '[redacted]' },
  };
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}
