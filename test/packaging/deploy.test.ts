// The plain manifests of deploy/ (for users without Helm), rendered from the kustomization as
// `kubectl apply -k deploy/` would send them (and compared with what `kubectl kustomize` renders: skipped with one
// loud line without kubectl, failing under CI): every object passes a server-side dry run on a real kube-apiserver
// 1.20, in order (the Namespace and the CRD first, then created for real so the rest can refer to them), and the
// server keeps every field. The ingest token Secret the Deployment needs is the one the documented command creates.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { envtestAssets, installCRDs, startCluster, type StartedCluster } from '../support/envtest.ts';
import { DryRunClient, droppedFields } from './dry-run.ts';
import { need, skipWithout } from '../support/tools.ts';
import { only, parseManifests, REPO, type Manifest } from './render.ts';
import { KUBECTL, kustomize } from './kustomize.ts';
import { EXPECTED_RULES } from './rbac-rules.ts';

const DEPLOY = join(REPO, 'deploy');
const assets = envtestAssets();

let objects: Manifest[];

beforeAll(async () => {
  objects = await kustomize(DEPLOY);
});

interface Container { args: string[]; env: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[] }
const containerOf = (o: Manifest[]): Container =>
  (only(o, 'Deployment').spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]!;

describe('deploy/: the kustomization', () => {
  it('holds the namespace, the CRD, the ServiceAccount, the ClusterRole and its binding, the Deployment and the Service', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort()).toEqual([
      'ClusterRole//registry-notifier',
      'ClusterRoleBinding//registry-notifier',
      'CustomResourceDefinition//notificationendpoints.registry-notifier.io',
      'Deployment/registry-notifier/registry-notifier',
      'Namespace//registry-notifier',
      'Service/registry-notifier/registry-notifier',
      'ServiceAccount/registry-notifier/registry-notifier',
    ]);
    expect(only(objects, 'ClusterRole').rules).toEqual(EXPECTED_RULES);
    expect(only(objects, 'ClusterRoleBinding').subjects).toEqual([{ kind: 'ServiceAccount', name: 'registry-notifier', namespace: 'registry-notifier' }]);
  });

  it.skipIf(skipWithout(KUBECTL, 'the `kubectl kustomize deploy/` comparison'))('renders exactly as `kubectl kustomize deploy/` does', async () => {
    const { stdout } = await promisify(execFile)(need(KUBECTL), ['kustomize', DEPLOY]);
    const key = (o: Manifest): string => `${o.kind}/${o.metadata.name}`;
    const sorted = (list: Manifest[]): Manifest[] => [...list].sort((a, b) => key(a).localeCompare(key(b)));
    expect(sorted(objects)).toEqual(sorted(parseManifests(stdout)));
  });

  it('runs `serve --kubernetes` with the token from the Secret the documented command creates', () => {
    const container = containerOf(objects);
    const config = parseCommand(container.args, { REGISTRY_NOTIFIER_INGEST_TOKEN: 'from-secret' }) as ServeConfig;
    expect(config).toMatchObject({ command: 'serve', kubernetes: true, namespaces: [], ingestToken: 'from-secret' });
    const ref = container.env.find((e) => e.name === 'REGISTRY_NOTIFIER_INGEST_TOKEN')?.valueFrom?.secretKeyRef;
    expect(ref).toEqual({ name: 'registry-notifier-ingest-token', key: 'token' });
    // Both documents show the command (in a comment, over two lines); joined, it creates exactly that Secret.
    const flat = (file: string): string => readFileSync(join(DEPLOY, file), 'utf8').replace(/^# ?/gm, '').replace(/\s*\\\n\s*/g, ' ');
    const command = `kubectl -n registry-notifier create secret generic ${ref!.name} --from-literal=${ref!.key}=`;
    expect(flat('README.md')).toContain(command);
    expect(flat('kustomization.yaml')).toContain(command);
  });
});

describe.skipIf(!assets)('deploy/: every object passes a server-side dry run (kube-apiserver 1.20)', () => {
  let env: StartedCluster;
  let client: DryRunClient;

  beforeAll(async () => {
    env = await startCluster();
    client = new DryRunClient(env.cluster);
  });

  afterAll(() => env?.stop(() => client?.close()));

  it('in order: Namespace and CRD first (then created for real), then everything else; nothing dropped', async () => {
    const rank = (o: Manifest): number => (o.kind === 'Namespace' ? 0 : o.kind === 'CustomResourceDefinition' ? 1 : 2);
    const problems: string[] = [];
    for (const object of [...objects].sort((a, b) => rank(a) - rank(b))) {
      const result = await client.dryRunCreate(object);
      if (result.status !== 201) problems.push(`${result.object}: ${result.status} ${result.message}`);
      else problems.push(...droppedFields(object, result.stored).map((path) => `${result.object}: the server dropped or changed ${path}`));
      if (object.kind === 'Namespace') await client.create(object);
      if (object.kind === 'CustomResourceDefinition') {
        await installCRDs(env.kc, join(DEPLOY, 'crds'));
        client.refreshDiscovery();
      }
    }
    expect(problems).toEqual([]);
  });

  it('a NotificationEndpoint is accepted by the installed CRD, with its defaults applied', async () => {
    const endpoint: Manifest = { apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'ci', namespace: 'registry-notifier' }, spec: { url: 'https://ci.example.com/hook' } };
    const result = await client.dryRunCreate(endpoint);
    expect(result.status, result.message).toBe(201);
    expect(result.stored?.spec).toMatchObject({ url: 'https://ci.example.com/hook', timeout: '1s', threshold: 10, maxBatchEvents: 1 });
  });
});
