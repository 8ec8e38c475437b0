{{/* Chart name, overridable. */}}
{{- define "memory-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "memory-operator.fullname" -}}
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

{{- define "memory-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memory-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "memory-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "memory-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "memory-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memory-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "memory-operator.leaseName" -}}
{{- default (include "memory-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* /readyz: the operator serves and the API server answers for MemoryPolicies (standbys included). */}}
{{- define "memory-operator.readinessPath" -}}
{{- .Values.probes.readinessPath | default "/readyz" }}
{{- end }}

{{/* Where the operator reads its metrics sources (PROMETHEUS_SOURCES), from the ConfigMap. */}}
{{- define "memory-operator.configDir" -}}
/etc/memory-operator/config
{{- end }}

{{/* The directory of one source's files (token, ca.crt, tls.crt, tls.key); context: the source. */}}
{{- define "memory-operator.sourceDir" -}}
/etc/memory-operator/sources/{{ .name }}
{{- end }}

{{/*
prometheusSources, checked, as a YAML list (read back with fromYamlArray); only when it is not
empty, as without it the operator takes PROMETHEUS_URL. The schema checks each entry; what it
cannot say is refused here.
*/}}
{{- define "memory-operator.sources" -}}
{{- $sources := .Values.prometheusSources }}
{{- $seen := dict }}
{{- range $i, $s := $sources }}
{{- $where := printf "prometheusSources[%d] (%s)" $i $s.name }}
{{- if hasKey $seen $s.name }}
{{- fail (printf "%s: the name %q is taken by prometheusSources[%d]; policies name a source by it, so each needs its own" $where $s.name (get $seen $s.name)) }}
{{- end }}
{{- $_ := set $seen $s.name $i }}
{{- if and $s.bearerToken $s.serviceAccountToken }}
{{- fail (printf "%s: bearerToken and serviceAccountToken both set; the operator sends one bearer token per source, so choose one" $where) }}
{{- end }}
{{- if and $s.ca $s.ca.configMap $s.ca.secret }}
{{- fail (printf "%s: ca names both a configMap and a secret; the CA bundle comes from one of them" $where) }}
{{- end }}
{{- end }}
{{- toYaml $sources }}
{{- end }}

{{/* sources.yaml, the operator's --sources file: each source with the paths of its mounted files. */}}
{{- define "memory-operator.sourcesFile" -}}
sources:
{{- range include "memory-operator.sources" . | fromYamlArray }}
{{- $dir := include "memory-operator.sourceDir" . }}
  - name: {{ .name | quote }}
    url: {{ .url | quote }}
    {{- with .timeout }}
    timeout: {{ . }}
    {{- end }}
    {{- if or .bearerToken .serviceAccountToken }}
    bearerTokenFile: {{ $dir }}/token
    {{- end }}
    {{- if .ca }}
    caFile: {{ $dir }}/ca.crt
    {{- end }}
    {{- if .clientCert }}
    clientCertFile: {{ $dir }}/tls.crt
    clientKeyFile: {{ $dir }}/tls.key
    {{- end }}
{{- end }}
{{- end }}

{{/*
The files one source needs, as the sources of a projected volume (empty when it needs none),
at the paths sourcesFile gives them; context: the source.
*/}}
{{- define "memory-operator.sourceProjections" -}}
{{- with .bearerToken }}
- secret:
    name: {{ .secret }}
    items:
      - key: {{ .key | default "token" }}
        path: token
{{- end }}
{{- with .serviceAccountToken }}
# Bound to the audience, so the receiver cannot replay it to the API server.
- serviceAccountToken:
    audience: {{ .audience | quote }}
    expirationSeconds: {{ .expirationSeconds | default 3600 | int64 }}
    path: token
{{- end }}
{{- with .ca }}
- {{ if .configMap }}configMap{{ else }}secret{{ end }}:
    name: {{ .configMap | default .secret }}
    items:
      - key: {{ .key | default "ca.crt" }}
        path: ca.crt
{{- end }}
{{- with .clientCert }}
- secret:
    name: {{ .secret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}

{{/* The volume of one source's files: a DNS label, shortened with a hash for long names; context: the source. */}}
{{- define "memory-operator.sourceVolume" -}}
{{- $name := printf "source-%s" .name }}
{{- if gt (len $name) 63 }}
{{- $name = printf "%s-%s" ($name | trunc 54 | trimSuffix "-") (.name | sha256sum | trunc 8) }}
{{- end }}
{{- $name }}
{{- end }}
