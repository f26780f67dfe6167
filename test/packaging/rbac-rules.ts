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
