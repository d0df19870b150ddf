{{/* Names, labels and shared pod pieces of the ketch chart. */}}

{{- define "ketch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ketch.fullname" -}}
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

{{- define "ketch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ketch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ketch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ketch.labels" -}}
helm.sh/chart: {{ include "ketch.chart" . }}
{{ include "ketch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ketch
{{- end }}

{{- define "ketch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ketch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ketch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the database URL (the chart's own, or database.existingSecret). */}}
{{- define "ketch.databaseSecret" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- include "ketch.fullname" . }}
{{- end }}
{{- end }}

{{- define "ketch.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
database-url
{{- end }}
{{- end }}

{{- define "ketch.s3Secret" -}}
{{- if .Values.artifacts.s3.existingSecret }}
{{- .Values.artifacts.s3.existingSecret }}
{{- else }}
{{- include "ketch.fullname" . }}
{{- end }}
{{- end }}

{{/* Fail early, with the fix, on values that cannot work. */}}
{{- define "ketch.validate" -}}
{{- if not (or .Values.database.url .Values.database.existingSecret) }}
{{- fail "ketch: set database.url (postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB) or database.existingSecret" }}
{{- end }}
{{- if and .Values.database.url (not (hasPrefix "postgresql" .Values.database.url)) }}
{{- fail "ketch: database.url must be a postgresql:// or postgresql+asyncpg:// URL: replicas share one PostgreSQL" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not (hasPrefix "s3://" .Values.artifacts.location)) }}
{{- fail "ketch: with more than one replica, artifacts.location must be s3://bucket/prefix (every replica must see the same bytes)" }}
{{- end }}
{{- if not (has .Values.server.auth (list "none" "token" "mtls")) }}
{{- fail "ketch: server.auth must be none, token or mtls" }}
{{- end }}
{{- if and (eq .Values.server.auth "mtls") (not .Values.tls.secretName) }}
{{- fail "ketch: server.auth=mtls needs tls.secretName (with ca.crt)" }}
{{- end }}
{{- end }}

{{/* The Secret the migration Job reads the database URL from: a hook-time copy, since
the chart's own Secret does not exist yet when a pre-install hook runs. */}}
{{- define "ketch.migrationSecret" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-migrate" (include "ketch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Probe timing fields from probes.liveness / probes.readiness. */}}
{{- define "ketch.probeTiming" -}}
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end }}
