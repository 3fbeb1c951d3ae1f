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

{{/* The pipeline's selector (unchanged since the chart's first version: selectors are immutable). */}}
{{- define "tact.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tact.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The insights lane: its own name, so the pipeline's selector never matches its pods. */}}
{{- define "tact.insights.fullname" -}}
{{- printf "%s-insights" (include "tact.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "tact.insights.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tact.insights.selectorLabels" . }}
app.kubernetes.io/component: insights
app.kubernetes.io/part-of: {{ include "tact.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tact.insights.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-insights" (include "tact.name" . | trunc 54 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tact.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tact.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------------
TOML rendering. Helm reads every number of a values file as a float: whole numbers render as TOML
integers (tact accepts an integer wherever it wants a float), others as TOML floats (0.05 stays
0.05). Numbers given with --set arrive as integers; --set turns 0.05 into a string, so give
fractions in a values file or with --set-json.
--------------------------------------------------------------------------------------------- */}}

{{/* A key: bare when it can be, else quoted (e.g. "client.id"). */}}
{{- define "tact.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* A number: whole numbers as integers, fractions as floats. */}}
{{- define "tact.tomlNumber" -}}
{{- if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) }}{{ . }}
{{- else if eq (float64 (int64 .)) (float64 .) }}{{ int64 . }}
{{- else }}
{{- $s := toString . }}
{{- if not (regexMatch "^-?[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?$" $s) }}{{ fail (printf "tact: %s is not a finite number" $s) }}{{ end }}
{{- $s }}
{{- end }}
{{- end }}

{{/* A value: strings JSON-quoted (valid TOML basic strings), numbers, booleans, inline arrays. */}}
{{- define "tact.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) }}{{ include "tact.tomlNumber" . }}
{{- else if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}
{{- if kindIs "map" . }}{{ fail "tact: an array mixing tables and values cannot be rendered as TOML" }}{{ end }}
{{- $items = append $items (include "tact.tomlValue" .) }}
{{- end }}[{{ join ", " $items }}]
{{- else }}{{ fail (printf "tact: config values must be strings, numbers, booleans, arrays or tables, got %v" .) }}
{{- end }}
{{- end }}

{{/* "true" for a non-empty list of tables (rendered as [[array.of.tables]]). */}}
{{- define "tact.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) }}
{{- $all := true }}
{{- range . }}{{ if not (kindIs "map" .) }}{{ $all = false }}{{ end }}{{ end }}
{{- if $all }}true{{ end }}
{{- end }}
{{- end }}

{{/* A table and everything below it: (dict "path" "policy.holdout" "table" $map); path "" is the
document root. Plain keys first, then sub-tables ([a.b]) and arrays of tables ([[a.b]]). */}}
{{- define "tact.tomlTable" -}}
{{- $path := .path }}
{{- range $k, $v := .table }}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "tact.isTableArray" $v)) }}
{{ include "tact.tomlKey" $k }} = {{ include "tact.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- $sub := include "tact.tomlKey" $k }}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end }}
{{- if kindIs "map" $v }}

[{{ $sub }}]
{{- include "tact.tomlTable" (dict "path" $sub "table" $v) }}
{{- else if include "tact.isTableArray" $v }}
{{- range $v }}

[[{{ $sub }}]]
{{- include "tact.tomlTable" (dict "path" $sub "table" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* A scalar as a string (librdkafka values are strings); whole numbers without a fraction. */}}
{{- define "tact.stringValue" -}}
{{- if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}{{ include "tact.tomlNumber" . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/* The [kafka.client] passthrough as a JSON object of strings: what kafka.sasl / kafka.tls
generate, overridden by config.kafka.client, then (for the lane) insights.config.kafka.client. */}}
{{- define "tact.kafkaClient" -}}
{{- $root := .root }}
{{- $client := dict }}
{{- if $root.Values.kafka.sasl.enabled }}
{{- $_ := set $client "security.protocol" $root.Values.kafka.sasl.securityProtocol }}
{{- $_ := set $client "sasl.mechanisms" $root.Values.kafka.sasl.mechanism }}
{{- else if $root.Values.kafka.tls.enabled }}
{{- $_ := set $client "security.protocol" "SSL" }}
{{- end }}
{{- if and $root.Values.kafka.tls.enabled $root.Values.kafka.tls.existingSecret }}
{{- with $root.Values.kafka.tls.caFile }}
{{- $_ := set $client "ssl.ca.location" (printf "/etc/tact/tls/%s" .) }}
{{- end }}
{{- with $root.Values.kafka.tls.certFile }}
{{- $_ := set $client "ssl.certificate.location" (printf "/etc/tact/tls/%s" .) }}
{{- end }}
{{- with $root.Values.kafka.tls.keyFile }}
{{- $_ := set $client "ssl.key.location" (printf "/etc/tact/tls/%s" .) }}
{{- end }}
{{- end }}
{{- range .layers }}
{{- range $k, $v := (. | default dict) }}
{{- if not (kindIs "invalid" $v) }}
{{- $_ := set $client $k (include "tact.stringValue" $v) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $client }}
{{- end }}

{{/* tact.toml, rendered from .Values.config. */}}
{{- define "tact.configToml" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $kafka := deepCopy (get $cfg "kafka" | default dict) }}
{{- if and (get $kafka "instance_id") (gt (int .Values.replicaCount) 1) }}
{{- fail "config.kafka.instance_id would be the same for every pod: leave it out and use staticMembership (the pod name)" }}
{{- end }}
{{- $client := include "tact.kafkaClient" (dict "root" . "layers" (list (get $kafka "client"))) | fromJson }}
{{- $_ := set $kafka "client" $client }}
{{- $_ := set $cfg "kafka" $kafka }}
{{- $state := deepCopy (get $cfg "state" | default dict) }}
{{- $_ := set $state "dir" (printf "%s/state" .Values.persistence.mountPath) }}
{{- $_ := set $cfg "state" $state }}
{{- $http := omit (get $cfg "http" | default dict) "listen" }}
{{- if $http }}{{ $_ := set $cfg "http" $http }}{{ else }}{{ $_ := unset $cfg "http" }}{{ end -}}
# Rendered by the tact Helm chart from .Values.config. TACT__SECTION__KEY environment variables
# (see the StatefulSet: http.listen, kafka.instance_id) override these settings.
{{- include "tact.tomlTable" (dict "path" "" "table" $cfg) }}
{{- end }}

{{/* insights.toml, rendered from .Values.insights.config. Brokers, the clickstream topic and its
format default to the pipeline's; [sensitivity] to config.policy.sensitivity when that is set. */}}
{{- define "tact.insightsToml" -}}
{{- $cfg := deepCopy (.Values.insights.config | default dict) }}
{{- $pipeline := .Values.config | default dict }}
{{- $pkafka := get $pipeline "kafka" | default dict }}
{{- $kafka := deepCopy (get $cfg "kafka" | default dict) }}
{{- if and (get $kafka "instance_id") (gt (int .Values.insights.replicaCount) 1) }}
{{- fail "insights.config.kafka.instance_id would be the same for every pod: leave it out and use insights.staticMembership (the pod name)" }}
{{- end }}
{{- if and (not (get $kafka "bootstrap_servers")) (get $pkafka "bootstrap_servers") }}
{{- $_ := set $kafka "bootstrap_servers" (get $pkafka "bootstrap_servers") }}
{{- end }}
{{- $client := include "tact.kafkaClient" (dict "root" . "layers" (list (get $pkafka "client") (get $kafka "client"))) | fromJson }}
{{- $_ := set $kafka "client" $client }}
{{- $_ := set $cfg "kafka" $kafka }}
{{- $topics := deepCopy (get $cfg "topics" | default dict) }}
{{- $ptopics := get $pipeline "topics" | default dict }}
{{- if and (not (get $topics "clickstream")) (get $ptopics "clickstream") }}
{{- $_ := set $topics "clickstream" (get $ptopics "clickstream") }}
{{- end }}
{{- $_ := set $cfg "topics" $topics }}
{{- $input := deepCopy (get $cfg "input" | default dict) }}
{{- $pinput := get $pipeline "input" | default dict }}
{{- if and (not (get $input "clickstream_format")) (get $pinput "clickstream_format") }}
{{- $_ := set $input "clickstream_format" (get $pinput "clickstream_format") }}
{{- end }}
{{- $_ := set $cfg "input" $input }}
{{- $ppolicy := get $pipeline "policy" | default dict }}
{{- if and (not (hasKey $cfg "sensitivity")) (get $ppolicy "sensitivity") }}
{{- $_ := set $cfg "sensitivity" (deepCopy (get $ppolicy "sensitivity")) }}
{{- end }}
{{- $state := deepCopy (get $cfg "state" | default dict) }}
{{- $_ := set $state "dir" (printf "%s/state" .Values.insights.persistence.mountPath) }}
{{- $_ := set $cfg "state" $state }}
{{- $http := omit (get $cfg "http" | default dict) "listen" }}
{{- if $http }}{{ $_ := set $cfg "http" $http }}{{ else }}{{ $_ := unset $cfg "http" }}{{ end -}}
# Rendered by the tact Helm chart from .Values.insights.config. TACT_INSIGHTS__SECTION__KEY
# environment variables (see the StatefulSet: http.listen, kafka.instance_id) override these settings.
{{- include "tact.tomlTable" (dict "path" "" "table" $cfg) }}
{{- end }}

{{/* An env value as a quoted string; whole numbers without an exponent. */}}
{{- define "tact.envValue" -}}
{{- include "tact.stringValue" . | quote }}
{{- end }}

{{/* Fails unless the stop timeout is longer than the drain deadline. */}}
{{- define "tact.checkGrace" -}}
{{- $deadlineMs := int64 (.deadlineMs | default 10000) }}
{{- if le (mul (int64 .graceSeconds) 1000) $deadlineMs }}
{{- fail (printf "%s must be longer than %s" .graceKey .deadlineKey) }}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget: (dict "root" $ "name" NAME "labels" LABELS "selector" LABELS "pdb" VALUES) */}}
{{- define "tact.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- .labels | nindent 4 }}
spec:
  {{- if and (not (kindIs "invalid" .pdb.minAvailable)) (ne (toString .pdb.minAvailable) "") }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else if kindIs "invalid" .pdb.maxUnavailable }}
  maxUnavailable: 1
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable }}
  {{- end }}
  {{- with .pdb.unhealthyPodEvictionPolicy }}
  unhealthyPodEvictionPolicy: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- .selector | nindent 6 }}
{{- end }}
