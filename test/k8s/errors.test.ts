import { describe, expect, it } from 'vitest';
import { ApiCallError, describeApiError, statusCode } from '../../src/k8s/errors.ts';

// client-node's ApiException puts the response body in its message; bodies may hold Secret data.
const apiException = (code: number): Error => Object.assign(new Error(`HTTP-Code: ${code}\nMessage: Unknown API Status Code!\nBody: {"data":{"token":"c2VjcmV0"}}`), { code });

describe('describeApiError', () => {
  it('an API answer is its status, with a hint for 401 and 403, never the body', () => {
    expect(describeApiError(apiException(500))).toBe('HTTP 500');
    expect(describeApiError(apiException(403))).toBe('HTTP 403 (forbidden: check the RBAC rules of the service account)');
    expect(describeApiError(apiException(401))).toBe('HTTP 401 (unauthorized: check the credentials)');
    expect(describeApiError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { name: 'TypeError' }))).toBe('TypeError: connect ECONNREFUSED 127.0.0.1:6443');
  });
});

describe('ApiCallError', () => {
  it('names the call and the status, keeps the original as cause, and its description is its message', () => {
    const cause = apiException(503);
    const error = new ApiCallError('reading Secret token', cause);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'ApiCallError', code: 'ERR_API_CALL', statusCode: 503, message: 'reading Secret token: HTTP 503', cause });
    expect(statusCode(error)).toBe(503);
    expect(describeApiError(error)).toBe('reading Secret token: HTTP 503');
    expect(`${error.message} ${describeApiError(error)}`).not.toContain('c2VjcmV0');
  });

  it('a call that got no answer has no status', () => {
    const error = new ApiCallError('reading Secret token', new Error('socket hang up'));
    expect(error.statusCode).toBeUndefined();
    expect(error.message).toBe('reading Secret token: socket hang up');
  });
});
