// PooledKubeConfig against a real HTTPS server on 127.0.0.1 (test PKI): API calls and watches share one TLS
// connection, carry client-node's authentication (bearer token, client certificate), and a new client
// certificate gets a new connection.
import { createSecureServer } from 'node:http2';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { CoreV1Api, Watch } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { PooledKubeConfig, sameConnectOptions } from '../../src/k8s/kube-config.ts';
import { testPki } from '../support/tls.ts';
import { eventually } from '../support/wait.ts';

interface Seen { connections: number; authorizations: string[]; clientCerts: string[] }

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function apiServer(): Promise<{ url: string; seen: Seen }> {
  const pki = testPki();
  const seen: Seen = { connections: 0, authorizations: [], clientCerts: [] };
  const server = createServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    seen.authorizations.push(req.headers.authorization ?? '');
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    seen.clientCerts.push(peer.fingerprint256 ?? '');
    res.setHeader('content-type', 'application/json');
    if (req.url?.includes('watch=true')) {
      res.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a', resourceVersion: '2' } } })}\n`);
      res.end();
      return;
    }
    res.end(JSON.stringify({ apiVersion: 'v1', kind: 'NamespaceList', metadata: { resourceVersion: '1' }, items: [] }));
  });
  server.on('secureConnection', () => seen.connections++);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function kubeConfig(server: string, user: Record<string, string>): PooledKubeConfig {
  const kc = new PooledKubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, caData: Buffer.from(testPki().ca).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'u', ...user }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('PooledKubeConfig', () => {
  it('API calls and watches share one TLS connection and carry the bearer token', async () => {
    const { url, seen } = await apiServer();
    const kc = kubeConfig(url, { token: 'secret-token' });
    const core = kc.makeApiClient(CoreV1Api);
    for (let i = 0; i < 5; i++) expect((await core.listNamespace()).items).toEqual([]);
    await Promise.all(Array.from({ length: 5 }, () => core.listNamespace()));
    const names: string[] = [];
    await new Watch(kc).watch('/api/v1/namespaces', {}, (_type, object: { metadata: { name: string } }) => names.push(object.metadata.name), () => undefined);
    await eventually(() => expect(names).toEqual(['a']), 5_000);
    expect(seen.authorizations).toHaveLength(11);
    expect(new Set(seen.authorizations)).toEqual(new Set(['Bearer secret-token']));
    // Five calls one after the other, five side by side (undici opens what it needs for those) and a watch: a plain
    // KubeConfig opens one connection per request, 11.
    expect(seen.connections).toBeLessThanOrEqual(6);
    const before = seen.connections;
    for (let i = 0; i < 5; i++) await core.listNamespace();
    expect(seen.connections).toBe(before);
  });

  it('speaks HTTP/1.1 to a server that offers HTTP/2 (a slow watch must not hold other calls behind one connection)', async () => {
    const pki = testPki();
    const versions: string[] = [];
    const server = createSecureServer({ cert: pki.serverCert, key: pki.serverKey, allowHTTP1: true }, (req, res) => {
      versions.push(req.httpVersion);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'NamespaceList', metadata: {}, items: [] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const core = kubeConfig(`https://127.0.0.1:${(server.address() as AddressInfo).port}`, { token: 't' }).makeApiClient(CoreV1Api);
      await core.listNamespace();
      await core.listNamespace();
      expect(versions).toEqual(['1.1', '1.1']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('presents the client certificate; a new certificate gets a new connection', async () => {
    const pki = testPki();
    const { url, seen } = await apiServer();
    const kc = kubeConfig(url, { certData: Buffer.from(pki.clientCert).toString('base64'), keyData: Buffer.from(pki.clientKey).toString('base64') });
    const core = kc.makeApiClient(CoreV1Api);
    // undici may open a second connection while the first one's response is being finished; then they are reused.
    for (let i = 0; i < 3; i++) await core.listNamespace();
    const warm = seen.connections;
    expect(warm).toBeLessThanOrEqual(2);
    for (let i = 0; i < 5; i++) await core.listNamespace();
    expect(seen.connections).toBe(warm);
    expect(seen.clientCerts[0]).toMatch(/^[0-9A-F:]+$/);
    expect(new Set(seen.clientCerts).size).toBe(1);
    // The server certificate stands in for a rotated client certificate (another key pair, same CA).
    kc.users[0] = { ...kc.users[0]!, certData: Buffer.from(pki.serverCert).toString('base64'), keyData: Buffer.from(pki.serverKey).toString('base64') };
    await core.listNamespace();
    expect(seen.connections).toBe(warm + 1);
    expect(seen.clientCerts.at(-1)).not.toBe(seen.clientCerts[0]);
  });
});

describe('sameConnectOptions (when a PooledKubeConfig keeps its pool)', () => {
  const pem = (text: string): Buffer => Buffer.from(`-----BEGIN CERTIFICATE-----\n${text}\n-----END CERTIFICATE-----\n`);

  it('the same identity decoded again (new buffers, equal bytes) is the same; other bytes, strings or keys are not', () => {
    const connect = { ca: pem('ca'), cert: pem('one'), key: pem('k1'), keepAlive: true, keepAliveInitialDelay: 30_000 };
    expect(sameConnectOptions(connect, { ...connect, ca: pem('ca'), cert: pem('one'), key: pem('k1') })).toBe(true);
    expect(sameConnectOptions(connect, { ...connect, cert: pem('two') })).toBe(false); // a rotated certificate
    expect(sameConnectOptions(connect, { ...connect, cert: pem('one').toString() })).toBe(false); // a string is not a buffer
    // An exec plugin's credentials are strings: compared as they are.
    expect(sameConnectOptions({ cert: 'one', key: 'k1' }, { cert: 'one', key: 'k1' })).toBe(true);
    expect(sameConnectOptions({ cert: 'one', key: 'k1' }, { cert: 'two', key: 'k1' })).toBe(false);
    expect(sameConnectOptions(connect, { ...connect, servername: 'localhost' })).toBe(false);
    expect(sameConnectOptions({ ...connect, rejectUnauthorized: false }, connect)).toBe(false);
  });

  it('other values (a list of CAs) compare by their JSON', () => {
    expect(sameConnectOptions({ ca: [pem('a'), pem('b')] }, { ca: [pem('a'), pem('b')] })).toBe(true);
    expect(sameConnectOptions({ ca: [pem('a'), pem('b')] }, { ca: [pem('a')] })).toBe(false);
  });
});
