// The close contract every sink shares (Distribution's checkClose): close flushes, a second close rejects with
// SinkClosedError, and a write after close rejects with SinkClosedError.
import { expect } from 'vitest';
import { SinkClosedError } from '../../src/notifications/errors.ts';
import type { Sink } from '../../src/notifications/sink.ts';

/** Asserts the close contract on a fresh sink, writing `sample` once before closing. */
export async function checkClose<T>(sink: Sink<T>, sample: readonly T[]): Promise<void> {
  await sink.write(sample);
  await sink.close();
  await expect(sink.close()).rejects.toBeInstanceOf(SinkClosedError);
  await expect(sink.write(sample)).rejects.toBeInstanceOf(SinkClosedError);
  await expect(sink.close()).rejects.toMatchObject({ code: 'ERR_SINK_CLOSED' });
}
