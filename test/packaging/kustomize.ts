// Renders deploy/'s kustomization without kustomize: the subset it uses (a namespace and a list of resource files),
// so most tests need no kubectl. Any other kustomization field is refused, never ignored; deploy.test.ts checks that
// `kubectl kustomize` renders the same objects (skipped loudly without kubectl, failing under CI).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { onPath, type Requirement } from '../support/tools.ts';
import { parseManifests, type Manifest } from './render.ts';

const SUPPORTED = new Set(['apiVersion', 'kind', 'namespace', 'resources']);
// Kinds without a namespace among those deploy/ uses (kustomize knows them from the OpenAPI schema).
const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);

/** The objects `kubectl kustomize DIR` would print, in resource order. */
export async function kustomize(dir: string): Promise<Manifest[]> {
  const kustomization = parse(await readFile(join(dir, 'kustomization.yaml'), 'utf8')) as { namespace?: string; resources?: string[] };
  const unsupported = Object.keys(kustomization).filter((key) => !SUPPORTED.has(key));
  if (unsupported.length > 0) throw new Error(`kustomization.yaml uses ${unsupported.join(', ')}, which test/packaging/kustomize.ts does not implement`);
  const objects: Manifest[] = [];
  for (const resource of kustomization.resources ?? []) {
    for (const object of parseManifests(await readFile(join(dir, resource), 'utf8'))) {
      if (kustomization.namespace && !CLUSTER_SCOPED.has(object.kind)) object.metadata.namespace = kustomization.namespace;
      objects.push(object);
    }
  }
  return objects;
}

/** kubectl on PATH (any working one; hack/install-e2e-deps.sh installs Debian's kubernetes-client where there is none). */
export const KUBECTL: Requirement = {
  what: 'kubectl',
  path: onPath('kubectl'),
  fix: 'run `bash hack/install-e2e-deps.sh` (as root; it installs Debian\'s kubernetes-client when no kubectl is on PATH)',
};
