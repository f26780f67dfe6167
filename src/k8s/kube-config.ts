import type https from 'node:https';
import { KubeConfig, type RequestContext } from '@kubernetes/client-node';
import { Agent } from 'undici';

/**
 * The cluster to talk to: the pod's service account when running in a cluster, else `KUBECONFIG` (or
 * `~/.kube/config`), as client-node's `loadFromDefault` resolves them. Its requests share connections.
 */
export function loadKubeConfig(): KubeConfig {
  const kc = new PooledKubeConfig();
  kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured: run in a pod or set KUBECONFIG');
  return kc;
}

/**
 * Whether two `connect` options name the same TLS identity: the same keys, each value the same primitive, a buffer
 * with the same bytes (client-node decodes the CA, certificate and key into new buffers on every call), or else
 * the same JSON. Comparing the bytes costs a memcmp; JSON.stringify of a buffer built an array of every byte.
 */
export function sameConnectOptions(a: object, b: object): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => {
    const [x, y] = [(a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]];
    if (x === y) return true;
    if (Buffer.isBuffer(x) && Buffer.isBuffer(y)) return x.equals(y);
    return typeof x === 'object' && typeof y === 'object' && JSON.stringify(x) === JSON.stringify(y);
  });
}

/**
 * A KubeConfig whose API calls and watches share one keep-alive connection pool per TLS identity. client-node
 * 2.0 builds a new undici Agent for every request, so every call paid a TCP and TLS handshake (about 4 ms of CPU
 * here, 20 ms per reconciled endpoint) and left an idle socket behind; 10,000 endpoints made that minutes of CPU
 * and hundreds of megabytes. Authentication is client-node's own (`applyToHTTPSOptions`: tokens, client
 * certificates, exec plugins, re-read as it re-reads them); only the dispatcher is kept. A new identity (a
 * rotated client certificate) gets a new pool, and the previous one closes once its requests are done. HTTP/1.1
 * only, a connection per concurrent call or watch. Proxied clusters keep client-node's own dispatcher.
 */
export class PooledKubeConfig extends KubeConfig {
  #pool: { connect: object; agent: Agent } | undefined;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    const cluster = this.getCurrentCluster();
    if (cluster?.proxyUrl) return super.applySecurityAuthentication(context);
    const options: https.RequestOptions = {};
    await this.applyToHTTPSOptions(options);
    if (options.auth) context.setHeaderParam('Authorization', `Basic ${Buffer.from(options.auth).toString('base64')}`);
    for (const [name, value] of Object.entries(options.headers ?? {})) context.setHeaderParam(name, `${String(value)}`);
    const tls: https.AgentOptions = { ca: options.ca, cert: options.cert, key: options.key, pfx: options.pfx, passphrase: options.passphrase };
    if (options.rejectUnauthorized !== undefined) tls.rejectUnauthorized = options.rejectUnauthorized;
    if (options.servername !== undefined) tls.servername = options.servername;
    const dispatcher = this.createDispatcherOptions(cluster, tls);
    if (dispatcher.type !== 'agent') return;
    let pool = this.#pool;
    if (!pool || !sameConnectOptions(pool.connect, dispatcher.connect)) {
      const previous = pool?.agent;
      // HTTP/1.1: over one HTTP/2 connection a watch whose stream is read slowly holds the connection's flow-control
      // window, and every other call waits behind it (seen: reconciles stalled at 1,000 of 3,000 endpoints).
      pool = this.#pool = { connect: dispatcher.connect, agent: new Agent({ connect: dispatcher.connect, allowH2: false }) };
      void previous?.close().catch(() => undefined);
    }
    context.setDispatcher(pool.agent);
  }
}
