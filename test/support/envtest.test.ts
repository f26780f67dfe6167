// Proves the envtest harness against a real kube-apiserver + etcd: CRUD, CRDs, compaction (410) and a restart.
import { readFile } from 'node:fs/promises';
import { CoreV1Api, CustomObjectsApi, Watch, type KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, applyManifests, envtestAssets } from './envtest.ts';

const assets = envtestAssets();

const CRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.test
spec:
  group: example.test
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget, listKind: WidgetList }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: { type: integer }
`;
const widget = { group: 'example.test', version: 'v1', plural: 'widgets' } as const;

interface WatchOutcome { events: { type: string; object: { code?: number; reason?: string; message?: string } }[]; error: unknown }

/** Watches `path` from `resourceVersion` until `until` holds for the events so far or the stream ends; deadline 15 s. */
async function watchFrom(cluster: TestCluster, path: string, rv: string, until: (o: WatchOutcome) => boolean): Promise<WatchOutcome> {
  const outcome: WatchOutcome = { events: [], error: undefined };
  let settle: () => void = () => {};
  const settled = new Promise<void>((resolve) => (settle = resolve));
  const abort = await new Watch(cluster.kubeConfig()).watch(
    path,
    { resourceVersion: rv },
    (type, object: WatchOutcome['events'][number]['object']) => {
      outcome.events.push({ type, object });
      if (until(outcome)) settle();
    },
    (err: unknown) => {
      outcome.error = err;
      settle();
    },
  );
  const timer = setTimeout(settle, 15_000);
  await settled;
  clearTimeout(timer);
  abort.abort();
  return outcome;
}

describe.skipIf(!assets)('TestCluster (real kube-apiserver + etcd)', () => {
  let cluster: TestCluster;
  const namespace = 'envtest-smoke';

  beforeAll(async () => {
    const started = Date.now();
    cluster = await TestCluster.start({ tokens: [{ token: 'viewer-token', user: 'viewer' }] });
    process.stderr.write(`envtest: cluster ready in ${Date.now() - started} ms\n`);
  });
  afterAll(async () => {
    await cluster?.stop();
    await cluster?.stop(); // idempotent
  });

  it('serves on loopback, writes a usable kubeconfig and authenticates static tokens', async () => {
    expect(cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(cluster.etcdUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await readFile(cluster.kubeconfigPath, 'utf8')).toContain(cluster.server);
    const viewer = cluster.kubeConfigFor('viewer-token').makeApiClient(CoreV1Api);
    await expect(viewer.listNamespace()).rejects.toMatchObject({ code: 403 }); // authenticated, but RBAC grants nothing
    const stranger = cluster.kubeConfigFor('no-such-token').makeApiClient(CoreV1Api);
    await expect(stranger.listNamespace()).rejects.toMatchObject({ code: 401 });
  });

  it('creates a namespace and a Secret and lists it back', async () => {
    const core = cluster.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'webhook-token' }, stringData: { token: 's3cret' } },
    });
    const secrets = await core.listNamespacedSecret({ namespace });
    const secret = secrets.items.find((s) => s.metadata?.name === 'webhook-token');
    expect(Buffer.from(secret?.data?.token ?? '', 'base64').toString()).toBe('s3cret');
  });

  it('applies a CRD, expires old resourceVersions on compaction, keeps data over an apiserver restart', { timeout: 90_000 }, async () => {
    const kc = cluster.kubeConfig();
    const applied = await applyManifests(kc, CRD);
    expect(applied.map((o) => o.metadata?.name)).toEqual(['widgets.example.test']);
    await applyManifests(kc, CRD); // a second apply replaces instead of failing with 409

    const custom = kc.makeApiClient(CustomObjectsApi);
    const created = (await custom.createNamespacedCustomObject({
      ...widget, namespace, body: { apiVersion: 'example.test/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 1 } },
    })) as KubernetesObject;
    const oldRv = created.metadata?.resourceVersion ?? '';
    expect(oldRv).toMatch(/^\d+$/);
    for (const size of [2, 3]) {
      const body = [{ op: 'replace', path: '/spec/size', value: size }];
      await custom.patchNamespacedCustomObject({ ...widget, namespace, name: 'w1', body });
    }
    const path = `/apis/example.test/v1/namespaces/${namespace}/widgets`;

    // Before compaction the watch replays both updates from the old resourceVersion.
    const before = await watchFrom(cluster, path, oldRv, (o) => o.events.length >= 2);
    expect(before.events.map((e) => e.type)).toEqual(['MODIFIED', 'MODIFIED']);

    const revision = await cluster.compactEtcd();
    expect(revision).toBeGreaterThan(Number(oldRv));

    // After compaction the same watch is answered with 410 Gone ("too old resource version") instead.
    const after = await watchFrom(cluster, path, oldRv, (o) => o.events.length > 0);
    const gone = after.events.find((e) => e.type === 'ERROR')?.object ?? {};
    const code = gone.code ?? (after.error as { statusCode?: number } | undefined)?.statusCode;
    expect(code).toBe(410);
    expect(gone.message ?? '').toMatch(/too old/i);

    await cluster.restartApiServer();
    const read = (await custom.getNamespacedCustomObject({ ...widget, namespace, name: 'w1' })) as { spec?: { size?: number } };
    expect(read.spec?.size).toBe(3);
  });
});
