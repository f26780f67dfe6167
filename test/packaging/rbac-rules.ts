// The exact rules of the controller's (Cluster)Role: the API calls src/k8s/kube-cluster-api.ts and
// src/controller/controller.ts make, and nothing more. The chart, deploy/ and the RBAC test all check against this.
export const EXPECTED_RULES = [
  { apiGroups: ['registry-notifier.io'], resources: ['notificationendpoints'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['registry-notifier.io'], resources: ['notificationendpoints/status'], verbs: ['patch'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
];

/**
 * The exact rules of the chart's leader election Role (with a database, in the release namespace): the calls
 * src/k8s/kube-lease-lock.ts makes on the Lease `lease`. Create cannot be limited by name; get and update are.
 */
export function leaderElectionRules(lease: string): { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] {
  return [
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [lease], verbs: ['get', 'update'] },
  ];
}

/**
 * The exact rule of the chart's tenancy ClusterRole (`tenancy: namespace`): the calls src/k8s/kube-cluster-api.ts makes
 * on Namespaces (get by name; list and watch of all, or of one by the field selector metadata.name). Limited to the
 * watched namespaces by name when there are any.
 */
export function tenancyRules(namespaces: string[] = []): { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] {
  return [{ apiGroups: [''], resources: ['namespaces'], ...(namespaces.length > 0 && { resourceNames: namespaces }), verbs: ['get', 'list', 'watch'] }];
}
