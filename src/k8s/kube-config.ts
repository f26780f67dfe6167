import { KubeConfig } from '@kubernetes/client-node';

/**
 * The cluster to talk to: the pod's service account when running in a cluster, else `KUBECONFIG` (or
 * `~/.kube/config`), as client-node's `loadFromDefault` resolves them.
 */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured: run in a pod or set KUBECONFIG');
  return kc;
}
