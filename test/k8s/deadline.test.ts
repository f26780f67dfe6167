import { describe, expect, it } from 'vitest';
import { ApiTimeoutError, withDeadline } from '../../src/k8s/deadline.ts';

describe('withDeadline', () => {
  it('passes a timely answer or failure through', async () => {
    await expect(withDeadline('get', async () => 42, 1000)).resolves.toBe(42);
    await expect(withDeadline('get', async () => Promise.reject(Object.assign(new Error('gone'), { code: 404 })), 1000)).rejects.toMatchObject({ code: 404 });
  });

  it('rejects a call that never answers with ApiTimeoutError, naming the call', async () => {
    const error = await withDeadline('list secrets', () => new Promise<never>(() => {}), 20).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiTimeoutError);
    expect(error).toMatchObject({ code: 'ERR_API_TIMEOUT', message: 'list secrets: no answer from the API server within 20 ms' });
  });
});
