// The exact rules of the controller's (Cluster)Role: the API calls src/k8s/kube-cluster-api.ts and
// src/controller/controller.ts make, and nothing more. The chart, deploy/ and the RBAC test all check against this.
export const EXPECTED_RULES = [
  { apiGroups: ['registry-notifier.io'], resources: ['notificationendpoints'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['registry-notifier.io'], resources: ['notificationendpoints/status'], verbs: ['patch'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
];
