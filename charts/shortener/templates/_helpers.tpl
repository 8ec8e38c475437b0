{{/* Chart name, overridable. */}}
{{- define "shortener.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "shortener.fullname" -}}
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

{{- define "shortener.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shortener.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shortener.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "shortener.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end }}

{{/* Refuses values that cannot work together. */}}
{{- define "shortener.checkWaterMarks" -}}
{{- $w := .Values.waterMarks }}
{{- if not (and (lt (int $w.low) (int $w.high)) (lt (int $w.high) (int $w.critical))) }}
{{- fail (printf "waterMarks must rise: low (%v) < high (%v) < critical (%v)" $w.low $w.high $w.critical) }}
{{- end }}
{{- if not (and .Values.resources .Values.resources.limits .Values.resources.limits.memory) }}
{{- fail "resources.limits.memory is required: the service reads its cgroup limit, and the water marks are percentages of it" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "enable serviceMonitor or podMonitor, not both: each scrapes every pod, and the policy would see every sample twice" }}
{{- end }}
{{- /* Variables the chart sets itself, and the value that sets each: an `env` entry of the same name would be a second, conflicting definition. */}}
{{- $own := dict "POD_IP" "(the pod's address)" "SHORTENER_LISTEN" "listenAddress and port" "DATABASE_URL" "database" "SHORTENER_ADMIN_TOKEN" "admin" "SHORTENER_BASE_URL" "baseUrl" "SHORTENER_LOW_WATER_MARK" "waterMarks.low" "SHORTENER_HIGH_WATER_MARK" "waterMarks.high" "SHORTENER_CRITICAL_MARK" "waterMarks.critical" "SHORTENER_MONITOR_INTERVAL" "memory.monitorInterval" "SHORTENER_MIN_TRIM_INTERVAL" "memory.minTrimInterval" "RUST_LOG" "logLevel" }}
{{- range $name, $_ := .Values.env }}
{{- if hasKey $own $name }}
{{- fail (printf "env.%s is set by the chart from %s; set that instead" $name (get $own $name)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Secret and key of DATABASE_URL: the user's, or the chart's own. */}}
{{- define "shortener.databaseSecretName" -}}
{{- default (include "shortener.fullname" .) .Values.database.existingSecret }}
{{- end }}
{{- define "shortener.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* Secret and key of SHORTENER_ADMIN_TOKEN; empty name when admin is disabled. */}}
{{- define "shortener.adminSecretName" -}}
{{- if .Values.admin.existingSecret }}{{ .Values.admin.existingSecret }}{{ else if .Values.admin.token }}{{ include "shortener.fullname" . }}{{ end }}
{{- end }}
{{- define "shortener.adminSecretKey" -}}
{{- if .Values.admin.existingSecret }}{{ .Values.admin.existingSecretKey }}{{ else }}admin-token{{ end }}
{{- end }}

{{/* PromQL selector of this release's pods (a Deployment's pods are NAME-HASH-ID). */}}
{{- define "shortener.podSelector" -}}
namespace="{{ .Release.Namespace }}", pod=~"{{ include "shortener.fullname" . }}-[a-z0-9]+-[a-z0-9]+"
{{- end }}
