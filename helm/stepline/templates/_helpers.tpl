{{/*
Names, labels, the image, the Secrets and the security settings that every template of the chart shares.
*/}}

{{- define "stepline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: the release name, plus the chart name unless it holds it. */}}
{{- define "stepline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stepline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "stepline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stepline
{{- end }}

{{/* Selector labels of one component: include with (dict "root" $ "component" "gateway"). */}}
{{- define "stepline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stepline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "stepline.componentLabels" -}}
{{ include "stepline.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "stepline.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "stepline.gatewayServiceAccount" -}}
{{- default (printf "%s-gateway" (include "stepline.fullname" .)) .Values.serviceAccount.gatewayName }}
{{- end }}

{{- define "stepline.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "stepline.fullname" .)) .Values.serviceAccount.operatorName }}
{{- end }}

{{/* The bundled Postgres runs only when no external database and no CNPG Cluster is given. */}}
{{- define "stepline.bundledPostgres" -}}
{{- if and .Values.postgres.enabled (not .Values.cnpg.enabled) (not .Values.database.url) (not .Values.database.existingSecret) }}true{{ end }}
{{- end }}

{{/* A CloudNativePG Cluster is the database: cnpg.enabled and no external one. */}}
{{- define "stepline.cnpg" -}}
{{- if and .Values.cnpg.enabled (not .Values.database.url) (not .Values.database.existingSecret) }}true{{ end }}
{{- end }}

{{/* The database is created with the release (bundled or CNPG): the first install migrates in init containers. */}}
{{- define "stepline.databaseWithRelease" -}}
{{- if or (include "stepline.bundledPostgres" .) (include "stepline.cnpg" .) }}true{{ end }}
{{- end }}

{{/* The CNPG Cluster's name; CNPG names its Services <name>-rw / -ro and its app Secret <name>-app. */}}
{{- define "stepline.cnpgCluster" -}}
{{- printf "%s-db" (include "stepline.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* The Secret and key holding the database URL. */}}
{{- define "stepline.databaseSecret" -}}
{{- default (include "stepline.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{- define "stepline.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* The Secret holding event-keys, signing-key, signing-key-fallback and api-token. */}}
{{- define "stepline.authSecret" -}}
{{- default (include "stepline.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/* The key that seals webhook secrets: the gateway opens them, the operator seals them. In an existing
Secret it may be missing (Webhooks with a secret then say so in their status). */}}
{{- define "stepline.secretsKeyEnv" -}}
- name: STEPLINE_SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "stepline.authSecret" . }}
      key: secrets-key
      {{- if .Values.auth.existingSecret }}
      optional: true
      {{- end }}
{{- end }}

{{/*
The database of the operator and the migrations: a direct connection to the primary. With CNPG the
credentials come from the Cluster's app Secret as PGUSER and PGPASSWORD, which the Postgres driver reads
when the URL has none, so no password is ever written into a URL.
*/}}
{{- define "stepline.databaseEnv" -}}
{{- if include "stepline.cnpg" . }}
{{- include "stepline.cnpgCredentials" . }}
- name: STEPLINE_DATABASE_URL
  value: {{ printf "postgresql://%s-rw:5432/stepline" (include "stepline.cnpgCluster" .) | quote }}
{{- else }}
- name: STEPLINE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "stepline.databaseSecret" . }}
      key: {{ include "stepline.databaseSecretKey" . }}
{{- end }}
{{- end }}

{{- define "stepline.cnpgCredentials" -}}
{{- $secret := printf "%s-app" (include "stepline.cnpgCluster" .) }}
- name: PGUSER
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: username}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: password}
{{- end }}

{{/*
The gateway's database: as the operator's, and with CNPG its pool through the Pooler when there is one
(the NOTIFY listener then keeps a direct session connection) and its reads from the replicas.
*/}}
{{- define "stepline.gatewayDatabaseEnv" -}}
{{- if include "stepline.cnpg" . }}
{{- $cluster := include "stepline.cnpgCluster" . }}
{{- include "stepline.cnpgCredentials" . }}
{{- if .Values.cnpg.pooler.enabled }}
- name: STEPLINE_DATABASE_URL
  value: {{ printf "postgresql://%s-pooler-rw:5432/stepline" $cluster | quote }}
- name: STEPLINE_SESSION_DATABASE_URL
  value: {{ printf "postgresql://%s-rw:5432/stepline" $cluster | quote }}
{{- else }}
- name: STEPLINE_DATABASE_URL
  value: {{ printf "postgresql://%s-rw:5432/stepline" $cluster | quote }}
{{- end }}
{{- if .Values.cnpg.readFromReplicas }}
- name: STEPLINE_READ_DATABASE_URL
  value: {{ printf "postgresql://%s-ro:5432/stepline" $cluster | quote }}
{{- end }}
{{- else }}
{{- include "stepline.databaseEnv" . }}
{{- end }}
{{- end }}

{{/* Pod and container security of the restricted Pod Security Standard. */}}
{{- define "stepline.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "stepline.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Python writes nothing but temporary files, and only under /tmp. */}}
{{- define "stepline.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "stepline.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Placement of a component's pods: include with its values (nodeSelector, tolerations, affinity). */}}
{{- define "stepline.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Checks of what the schema cannot say, failing the render with what to change.
*/}}
{{- define "stepline.validate" -}}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "give one of database.url or database.existingSecret, not both" }}
{{- end }}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) (not .Values.postgres.enabled) (not .Values.cnpg.enabled) }}
{{- fail "no database: set database.url or database.existingSecret, or cnpg.enabled=true for a CloudNativePG Cluster, or postgres.enabled=true for the bundled one" }}
{{- end }}
{{- if and .Values.cnpg.enabled (or .Values.database.url .Values.database.existingSecret) }}
{{- fail "cnpg.enabled creates the database: leave database.url and database.existingSecret empty, or turn cnpg off" }}
{{- end }}
{{- if and (eq .Values.operator.scope "Cluster") .Values.operator.namespaces }}
{{- fail "operator.namespaces applies to operator.scope=Namespaced only: set that scope too, or leave the namespaces empty to watch the whole cluster" }}
{{- end }}
{{- if lt (int .Values.gateway.autoscaling.maxReplicas) (int .Values.gateway.autoscaling.minReplicas) }}
{{- fail "gateway.autoscaling.maxReplicas must be at least gateway.autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.gateway.keda.enabled .Values.gateway.autoscaling.enabled }}
{{- fail "gateway.keda and gateway.autoscaling both scale the gateway (KEDA makes a HorizontalPodAutoscaler of its own): enable one of them" }}
{{- end }}
{{- if lt (int .Values.gateway.keda.maxReplicas) (int .Values.gateway.keda.minReplicas) }}
{{- fail "gateway.keda.maxReplicas must be at least gateway.keda.minReplicas" }}
{{- end }}
{{- if and .Values.auth.existingSecret (or .Values.auth.eventKeys .Values.auth.signingKey .Values.auth.signingKeyFallback .Values.auth.apiToken .Values.auth.secretsKey) }}
{{- fail "auth.existingSecret holds the keys: leave auth.eventKeys, signingKey, signingKeyFallback, apiToken and secretsKey empty" }}
{{- end }}
{{- end }}

{{/* The namespaces the operator watches in Namespaced scope. */}}
{{- define "stepline.watchedNamespaces" -}}
{{- if .Values.operator.namespaces }}{{ join "," .Values.operator.namespaces }}{{ else }}{{ .Release.Namespace }}{{ end }}
{{- end }}

{{/* A value kept from the Secret a previous release made, else the given one, base64-encoded. */}}
{{- define "stepline.keptValue" -}}
{{- $existing := index .existing .key | default "" }}
{{- if .value }}{{ .value | b64enc }}{{ else if $existing }}{{ $existing }}{{ else }}{{ .generated | b64enc }}{{ end }}
{{- end }}
