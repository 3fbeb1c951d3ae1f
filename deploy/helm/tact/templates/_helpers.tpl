{{/* Chart name. */}}
{{- define "tact.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "tact.fullname" -}}
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

{{- define "tact.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tact.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tact.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tact.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tact.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tact.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A scalar as a TOML value: strings JSON-quoted (valid TOML basic strings), numbers as integers. */}}
{{- define "tact.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}{{ int64 . }}
{{- else }}{{ fail (printf "tact: config values must be strings, integers or booleans, got %v" .) }}
{{- end }}
{{- end }}

{{/* The [kafka.client] passthrough: what kafka.sasl / kafka.tls generate, overridden by config.kafka.client. */}}
{{- define "tact.kafkaClient" -}}
{{- $client := dict }}
{{- if .Values.kafka.sasl.enabled }}
{{- $_ := set $client "security.protocol" .Values.kafka.sasl.securityProtocol }}
{{- $_ := set $client "sasl.mechanisms" .Values.kafka.sasl.mechanism }}
{{- else if .Values.kafka.tls.enabled }}
{{- $_ := set $client "security.protocol" "SSL" }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
{{- with .Values.kafka.tls.caFile }}
{{- $_ := set $client "ssl.ca.location" (printf "/etc/tact/tls/%s" .) }}
{{- end }}
{{- with .Values.kafka.tls.certFile }}
{{- $_ := set $client "ssl.certificate.location" (printf "/etc/tact/tls/%s" .) }}
{{- end }}
{{- with .Values.kafka.tls.keyFile }}
{{- $_ := set $client "ssl.key.location" (printf "/etc/tact/tls/%s" .) }}
{{- end }}
{{- end }}
{{- $merged := merge (deepCopy (.Values.config.kafka.client | default dict)) $client }}
{{- range $k, $v := $merged }}
{{ toJson $k }} = {{ include "tact.tomlString" $v }}
{{- end }}
{{- end }}

{{/* A scalar as a TOML string (librdkafka values are strings). */}}
{{- define "tact.tomlString" -}}
{{- if kindIs "float64" . }}{{ int64 . | toString | toJson }}{{ else }}{{ toString . | toJson }}{{ end }}
{{- end }}

{{/* tact.toml, rendered from .Values.config. */}}
{{- define "tact.configToml" -}}
# Rendered by the tact Helm chart from .Values.config. TACT__SECTION__KEY environment variables
# (see the StatefulSet) override these settings.
[kafka]
{{- range $k, $v := omit .Values.config.kafka "client" }}
{{ $k }} = {{ include "tact.tomlValue" $v }}
{{- end }}

[kafka.client]
{{- include "tact.kafkaClient" . }}
{{- range $section, $keys := omit .Values.config "kafka" "state" "http" }}

[{{ $section }}]
{{- range $k, $v := $keys }}
{{ $k }} = {{ include "tact.tomlValue" $v }}
{{- end }}
{{- end }}

[state]
dir = {{ printf "%s/state" .Values.persistence.mountPath | toJson }}
{{- end }}

{{/* An env value as a quoted string; whole numbers without an exponent. */}}
{{- define "tact.envValue" -}}
{{- if kindIs "float64" . }}{{ int64 . | toString | quote }}{{ else }}{{ toString . | quote }}{{ end }}
{{- end }}
