// Renders deploy/'s kustomization without kustomize: the subset it uses (a namespace and a list of resource files),
// so the tests need no kubectl. Any other kustomization field is refused, never ignored; where kubectl is installed,
// deploy.test.ts checks that `kubectl kustomize` renders the same objects.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { parse } from 'yaml';
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

/** Path of kubectl on PATH, if any. */
export function kubectlPath(): string | undefined {
  return (process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'kubectl')).find((p) => existsSync(p));
}
