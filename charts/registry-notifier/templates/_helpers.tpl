{{/*
Names, labels and the checks every template relies on. Names are truncated to 63 characters (DNS label limit)
with a trailing "-" removed.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "registry-notifier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's resources: fullnameOverride, else "<release>-<name>", else the release name
alone when it already contains the name ("registry-notifier" installed as "registry-notifier").
*/}}
{{- define "registry-notifier.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "registry-notifier-0.1.0", as the helm.sh/chart label. */}}
{{- define "registry-notifier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods; never change them after the first install (selectors are immutable). */}}
{{- define "registry-notifier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registry-notifier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "registry-notifier.labels" -}}
helm.sh/chart: {{ include "registry-notifier.chart" . }}
{{ include "registry-notifier.selectorLabels" . }}
app.kubernetes.io/version: {{ include "registry-notifier.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: registry-notifier
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Labels of the migration Job and its pod (database.migrationJob): their own name and component, so neither the
Deployment's selector, the Service nor the NetworkPolicy ever selects the pod.
*/}}
{{- define "registry-notifier.migrationLabels" -}}
helm.sh/chart: {{ include "registry-notifier.chart" . }}
app.kubernetes.io/name: {{ printf "%s-migrate" (include "registry-notifier.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ include "registry-notifier.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: migration
app.kubernetes.io/part-of: registry-notifier
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The ServiceAccount the pod runs as. */}}
{{- define "registry-notifier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "registry-notifier.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: set serviceAccount.name to an existing ServiceAccount in the release namespace, or set serviceAccount.create=true" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "registry-notifier.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* repository:tag, or repository:tag@digest when a digest pins the image. */}}
{{- define "registry-notifier.image" -}}
{{- $ref := printf "%s:%s" (required "image.repository is required: set image.repository, e.g. ghcr.io/registry-notifier/registry-notifier" .Values.image.repository) (include "registry-notifier.imageTag" .) -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- $ref -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the ingest token, and its key. */}}
{{- define "registry-notifier.ingestTokenSecretName" -}}
{{- default (printf "%s-ingest-token" (include "registry-notifier.fullname" .)) .Values.ingestToken.existingSecret -}}
{{- end -}}
{{- define "registry-notifier.ingestTokenSecretKey" -}}
{{- if .Values.ingestToken.existingSecret -}}
{{- required "ingestToken.existingSecretKey is required with ingestToken.existingSecret: set it to the key that holds the token" .Values.ingestToken.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

{{/*
The generated Secret's `token` value, base64-encoded: the token of the Secret found in the cluster when there is
one (so upgrades keep the token registries already use), else 48 fresh random characters. Called with
(dict "existing" <the looked-up Secret, or an empty dict>); `helm template` and dry runs find nothing and show a
new token.
*/}}
{{- define "registry-notifier.ingestTokenData" -}}
{{- $data := dig "data" "token" "" .existing -}}
{{- if $data -}}
{{- $data -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
Whether a database is configured (database.url or database.existingSecret.name): "true", or empty. Several replicas,
the replica id, the leader election Lease and its Role all depend on it.
*/}}
{{- define "registry-notifier.database" -}}
{{- if or .Values.database.url .Values.database.existingSecret.name -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the database URL, and its key: database.existingSecret, else the chart's <fullname>-database. */}}
{{- define "registry-notifier.databaseSecretName" -}}
{{- default (printf "%s-database" (include "registry-notifier.fullname" .)) .Values.database.existingSecret.name -}}
{{- end -}}
{{- define "registry-notifier.databaseSecretKey" -}}
{{- if .Values.database.existingSecret.name -}}
{{- required "database.existingSecret.key is required with database.existingSecret.name: set it to the key that holds the URL (default url)" .Values.database.existingSecret.key -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{/*
The Lease on which the replicas elect the one that writes status and Events: named after the release (the full name),
in the release namespace. The Deployment passes it as REGISTRY_NOTIFIER_LEADER_ELECTION_LEASE and the leader election
Role grants get and update on exactly this name.
*/}}
{{- define "registry-notifier.leaseName" -}}
{{- include "registry-notifier.fullname" . -}}
{{- end -}}

{{/*
The leader election's API calls (src/k8s/kube-lease-lock.ts, client-go's algorithm), and nothing more: read the Lease,
create it when it does not exist, replace it (with the resourceVersion read) to take, renew and release it.
*/}}
{{- define "registry-notifier.leaderElectionRules" -}}
# Only the first replica ever finds no Lease and creates it. RBAC cannot restrict create by name (the name is in
# the request body, not the URL), so this rule covers every Lease of the namespace; no other verb does.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
# Every round reads the Lease (get) and takes, renews or releases it with a replace carrying the resourceVersion
# read (update); never patch, delete, list or watch. Only this release's Lease.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "registry-notifier.leaseName" . | quote }}]
  verbs: ["get", "update"]
{{- end -}}

{{/* The PodDisruptionBudget API: policy/v1 from Kubernetes 1.21, policy/v1beta1 before (1.20). */}}
{{- define "registry-notifier.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/*
The permissions the controller uses, and nothing more (src/k8s/kube-cluster-api.ts, src/controller/controller.ts).
The same rules go into the ClusterRole (all namespaces) or into one Role per watched namespace.
*/}}
{{- define "registry-notifier.rbacRules" -}}
# The informer lists and watches NotificationEndpoints; the reconciler reads each one fresh by name (get)
# instead of trusting the watch event's copy.
- apiGroups: ["registry-notifier.io"]
  resources: ["notificationendpoints"]
  verbs: ["get", "list", "watch"]
# Ready/Delivering conditions and delivery counters are written with a merge patch of the status subresource;
# the controller never changes an endpoint's spec, so no update or patch on the resource itself.
- apiGroups: ["registry-notifier.io"]
  resources: ["notificationendpoints/status"]
  verbs: ["patch"]
# Header values, signing keys and TLS material come from Secrets the endpoints reference: the reconciler reads
# them (get) and an informer lists and watches Secrets to notice rotation. Without resourceNames, since the
# referenced names are only known at run time; scope with watchNamespaces to limit which Secrets are readable.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Normal and Warning Events on endpoints (e.g. InvalidSpec). Each is created with generateName and never
# updated or patched afterwards, so create suffices.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/*
With tenancy: namespace, the controller reads each endpoint's Namespace for its repository grant (src/k8s/kube-cluster-api.ts):
a ClusterRole, since Namespaces are cluster-scoped. With watchNamespaces, only those Namespaces (resourceNames): get by
name, and list and watch narrowed to one by the field selector metadata.name, which RBAC authorizes as that name.
*/}}
{{- define "registry-notifier.tenancyRules" -}}
# The reconciler reads the endpoint's Namespace fresh (get) for its registry-notifier.io/repositories annotation,
# and an informer lists and watches Namespaces to apply a changed grant within seconds. Never written.
- apiGroups: [""]
  resources: ["namespaces"]
  {{- with .Values.watchNamespaces }}
  resourceNames: [{{ range $i, $n := uniq . }}{{ if $i }}, {{ end }}{{ $n | quote }}{{ end }}]
  {{- end }}
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/*
The PromQL label matchers that select this release's series in the alerts: prometheusRule.seriesSelector, else what
the chart's ServiceMonitor gives them (job from the Service's app.kubernetes.io/name, namespace of the Service).
*/}}
{{- define "registry-notifier.seriesSelector" -}}
{{- default (printf "job=%q,namespace=%q" (include "registry-notifier.name" .) .Release.Namespace) .Values.prometheusRule.seriesSelector -}}
{{- end -}}

{{/* An alert's runbook_url: prometheusRule.runbookBaseUrl + "#" + the alert name in lower case. Called with (list $ "AlertName"). */}}
{{- define "registry-notifier.runbookUrl" -}}
{{- $root := index . 0 -}}
{{- printf "%s#%s" $root.Values.prometheusRule.runbookBaseUrl (lower (index . 1)) -}}
{{- end -}}

{{/* The labels of an alert: its severity and prometheusRule.additionalRuleLabels. Called with (list $ <the alert's values>). */}}
{{- define "registry-notifier.alertLabels" -}}
{{- $root := index . 0 -}}
severity: {{ (index . 1).severity }}
{{- with $root.Values.prometheusRule.additionalRuleLabels }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/* Seconds in a duration such as 30s, 1m30s or 1.5h (units ms, s, m, h, d, w, y), as a number, for the checks below. */}}
{{- define "registry-notifier.seconds" -}}
{{- $unit := dict "ms" 0.001 "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 "y" 31536000 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w|y)" (toString .) -1 -}}
{{- $u := regexFind "(ms|s|m|h|d|w|y)$" . -}}
{{- $total = addf $total (mulf (float64 (trimSuffix $u .)) (get $unit $u)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
The dashboard JSON of grafanaDashboard, read from the chart's dashboards/ folder. Fails when the file is missing (a
.helmignore that leaves it out).
*/}}
{{- define "registry-notifier.dashboardJson" -}}
{{- $json := .Files.Get "dashboards/registry-notifier.json" -}}
{{- required "charts/registry-notifier/dashboards/registry-notifier.json is missing from the chart: keep it (and out of .helmignore), or set grafanaDashboard.enabled=false" $json -}}
{{- end -}}

{{/*
Render-time checks of combinations the schema cannot express. Each message says exactly what to set.
Included once, from deployment.yaml.
*/}}
{{- define "registry-notifier.validate" -}}
{{- $v := .Values -}}
{{- if and $v.ingestToken.existingSecret (not $v.ingestToken.enabled) -}}
{{- fail "ingestToken.existingSecret is set but ingestToken.enabled is false: set ingestToken.enabled=true to require the token, or remove ingestToken.existingSecret" -}}
{{- end -}}
{{- if and (not $v.journal.enabled) $v.journal.persistence.enabled -}}
{{- fail "journal.persistence.enabled needs the journal: set journal.enabled=true, or journal.persistence.enabled=false" -}}
{{- end -}}
{{- if and $v.journal.persistence.existingClaim (not $v.journal.persistence.enabled) -}}
{{- fail "journal.persistence.existingClaim is set but journal.persistence.enabled is false: set journal.persistence.enabled=true (and journal.enabled=true) to use the claim, or remove journal.persistence.existingClaim" -}}
{{- end -}}
{{- $database := include "registry-notifier.database" . -}}
{{- if and $v.database.url $v.database.existingSecret.name -}}
{{- fail "database.url and database.existingSecret.name are mutually exclusive: set only one of them (database.existingSecret.name keeps the URL and its password out of Helm's values)" -}}
{{- end -}}
{{- if and $database $v.journal.enabled -}}
{{- fail "journal.enabled cannot be combined with a database (database.url or database.existingSecret.name): with a database the queue lives there, shared by every replica, and registry-notifier refuses --queue-dir with --database-url. Set journal.enabled=false, or remove the database to run one replica on a journal" -}}
{{- end -}}
{{- if and (not $database) (gt (int $v.replicaCount) 1) -}}
{{- fail (printf "replicaCount=%v needs a shared database: without one every pod keeps its own queues (the registry's events would be split between pods) and every pod writes every endpoint's status. Set database.existingSecret.name (a Secret holding a postgres:// URL) or database.url, or set replicaCount=1" $v.replicaCount) -}}
{{- end -}}
{{- if and $v.database.migrationJob.enabled (not $database) -}}
{{- fail "database.migrationJob.enabled needs a database: set database.existingSecret.name or database.url, or set database.migrationJob.enabled=false" -}}
{{- end -}}
{{- if lt (include "registry-notifier.seconds" $v.database.leaseDuration | float64) 1.0 -}}
{{- fail (printf "database.leaseDuration=%s is shorter than 1s, which registry-notifier refuses: set database.leaseDuration to 1s or more (default 15s)" $v.database.leaseDuration) -}}
{{- end -}}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) -}}
{{- fail "podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are mutually exclusive: set only one of them" -}}
{{- end -}}
{{- range $v.watchNamespaces -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) -}}
{{- fail (printf "watchNamespaces: %q is not a namespace name (lower-case letters, digits and '-')" .) -}}
{{- end -}}
{{- end -}}
{{- if $v.prometheusRule.enabled -}}
{{- $r := $v.prometheusRule -}}
{{- if and (not $v.serviceMonitor.enabled) (not $r.seriesSelector) -}}
{{- fail "prometheusRule.enabled needs registry-notifier's series in Prometheus: set serviceMonitor.enabled=true, or set prometheusRule.seriesSelector to the labels your own scrape gives them (e.g. 'job=\"registry-notifier\",namespace=\"registry\"')" -}}
{{- end -}}
{{- if $v.serviceMonitor.enabled -}}
{{- $window := include "registry-notifier.seconds" $r.rateWindow | float64 -}}
{{- $scrape := include "registry-notifier.seconds" $v.serviceMonitor.interval | float64 -}}
{{- if lt $window (mulf 4 $scrape) -}}
{{- fail (printf "prometheusRule.rateWindow=%s holds fewer than 4 scrapes of serviceMonitor.interval=%s: set prometheusRule.rateWindow to at least 4 × the interval, or lower serviceMonitor.interval" $r.rateWindow $v.serviceMonitor.interval) -}}
{{- end -}}
{{- end -}}
{{- $on := 0 -}}
{{- range $name, $alert := $r.alerts -}}
{{- if $alert.enabled -}}{{- $on = add1 $on -}}{{- end -}}
{{- end -}}
{{- if eq $on 0 -}}
{{- fail "prometheusRule.enabled is true but every prometheusRule.alerts.*.enabled is false: enable at least one alert, or set prometheusRule.enabled=false" -}}
{{- end -}}
{{- end -}}
{{- if and $v.grafanaDashboard.enabled (hasKey $v.grafanaDashboard.labels $v.grafanaDashboard.labelKey) -}}
{{- fail (printf "grafanaDashboard.labels must not contain %s, the sidecar's label: set its value with grafanaDashboard.labelValue" $v.grafanaDashboard.labelKey) -}}
{{- end -}}
{{- $managed := dict "kubernetes" "watchNamespaces (the chart always runs with --kubernetes)" "namespaces" "watchNamespaces" "queue-dir" "journal.enabled" "listen" "service.ports.ingest (the container port is fixed)" "metrics-listen" "service.ports.metrics (the container port is fixed)" "endpoints" "nothing: standalone mode cannot be combined with --kubernetes" "ingest-token-file" "ingestToken.existingSecret" "ingest-token" "ingestToken.existingSecret" "database-url" "database.existingSecret.name or database.url" "replica-id" "nothing: each pod is named after itself (metadata.name)" "lease-duration" "database.leaseDuration" "leader-election-lease" "nothing: the Lease is named after the release" "status-rate" "statusRate" "endpoint-histograms" "endpointHistograms" "tenancy" "tenancy (the RBAC it needs follows it)" -}}
{{- range $v.extraArgs -}}
{{- $arg := . -}}
{{- range $name, $value := $managed -}}
{{- $flag := printf "--%s" $name -}}
{{- if and (ne $name "ingest-token") (or (eq $arg $flag) (hasPrefix (printf "%s=" $flag) $arg)) -}}
{{- fail (printf "extraArgs must not contain %s, which the chart manages: set %s instead" $flag $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $v.extraEnv -}}
{{- $env := .name -}}
{{- range $name, $value := $managed -}}
{{- $twin := printf "REGISTRY_NOTIFIER_%s" (upper $name | replace "-" "_") -}}
{{- if eq $env $twin -}}
{{- fail (printf "extraEnv must not set %s, which the chart manages: set %s instead" $twin $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
