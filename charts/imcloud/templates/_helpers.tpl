{{/* Names, labels and the pieces every role's Deployment shares. */}}

{{- define "imcloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imcloud.fullname" -}}
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

{{/* "<fullname>-<role>", e.g. imcloud-comet. Call with (dict "root" $ "role" "comet"). */}}
{{- define "imcloud.roleName" -}}
{{- printf "%s-%s" (include "imcloud.fullname" .root) .role | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imcloud.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "imcloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imcloud
{{- end }}

{{/* Selector labels of one role. Call with (dict "root" $ "role" "comet"). */}}
{{- define "imcloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imcloud.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "imcloud.roleLabels" -}}
{{ include "imcloud.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "imcloud.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "imcloud.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imcloud.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "imcloud.secretName" -}}
{{- default (include "imcloud.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The TLS Secrets: an existing one, or the chart's own (which then needs the PEMs). */}}
{{- define "imcloud.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "imcloud.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "imcloud.internalTlsSecretName" -}}
{{- default (printf "%s-internal-tls" (include "imcloud.fullname" .)) .Values.internalTls.secretName }}
{{- end }}

{{/* A TOML value: strings as JSON strings (valid TOML basic strings), whole numbers without exponent. */}}
{{- define "imcloud.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}{{ fail (printf "config values must be strings, numbers or booleans, not %s" (kindOf .)) }}
{{- end }}
{{- end }}

{{/* The probes of a role: liveness /healthz, readiness /readyz, startup /healthz (slow starts: database
migrations, topic creation). Call with (dict "port" "metrics" "scheme" "HTTP"). */}}
{{- define "imcloud.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}, scheme: {{ .scheme | default "HTTP" }}}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}, scheme: {{ .scheme | default "HTTP" }}}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}, scheme: {{ .scheme | default "HTTP" }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
  successThreshold: 1
{{- end }}

{{/* Environment every role shares. Call with (dict "root" $ "role" "comet"). */}}
{{- define "imcloud.commonEnv" -}}
{{- $root := .root }}
- name: IMCLOUD_CONFIG
  value: /etc/imcloud/imcloud.toml
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: IMCLOUD_NODE_ID
  value: "$(POD_NAME)"
# Each pod advertises its own IP in the registry.
- name: IMCLOUD_ADVERTISE_HOST
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: IMCLOUD_AUTH_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "imcloud.secretName" $root }}, key: auth-secret}}
- name: IMCLOUD_API_KEY
  valueFrom: {secretKeyRef: {name: {{ include "imcloud.secretName" $root }}, key: api-key}}
- name: IMCLOUD_INTERNAL_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "imcloud.secretName" $root }}, key: internal-token}}
- name: IMCLOUD_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ include "imcloud.secretName" $root }}, key: redis-url, optional: true}}
- name: IMCLOUD_LOG_FORMAT
  value: {{ $root.Values.logs.format | quote }}
- name: RUST_LOG
  value: {{ $root.Values.logs.level | quote }}
{{- if not $root.Values.im.enabled }}
- name: IMCLOUD_IM
  value: "off"
{{- end }}
{{- if $root.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $root.Values.tracing.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "imcloud-%s" .role | quote }}
{{- range $k, $v := $root.Values.tracing.extraEnv }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- if $root.Values.tls.enabled }}
- name: IMCLOUD_TLS_CERT_FILE
  value: /etc/imcloud/tls/tls.crt
- name: IMCLOUD_TLS_KEY_FILE
  value: /etc/imcloud/tls/tls.key
{{- end }}
{{- if $root.Values.internalTls.enabled }}
- name: IMCLOUD_INTERNAL_CA_FILE
  value: /etc/imcloud/internal-tls/ca.crt
- name: IMCLOUD_INTERNAL_CERT_FILE
  value: /etc/imcloud/internal-tls/tls.crt
- name: IMCLOUD_INTERNAL_KEY_FILE
  value: /etc/imcloud/internal-tls/tls.key
{{- end }}
{{- end }}

{{/* Volumes every role mounts: the configuration, a writable /tmp, and the TLS material when enabled. */}}
{{- define "imcloud.volumeMounts" -}}
- name: config
  mountPath: /etc/imcloud/imcloud.toml
  subPath: imcloud.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/imcloud/tls
  readOnly: true
{{- end }}
{{- if .Values.internalTls.enabled }}
- name: internal-tls
  mountPath: /etc/imcloud/internal-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "imcloud.volumes" -}}
- name: config
  configMap:
    name: {{ include "imcloud.fullname" . }}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "imcloud.tlsSecretName" . }}
{{- end }}
{{- if .Values.internalTls.enabled }}
- name: internal-tls
  secret:
    secretName: {{ include "imcloud.internalTlsSecretName" . }}
{{- end }}
{{- end }}

{{/* Scheduling of one role: nodeSelector, tolerations, affinity, and topology spread (default: across
nodes and zones, ScheduleAnyway). Call with (dict "root" $ "role" "comet" "values" .Values.comet). */}}
{{- define "imcloud.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
{{- if .values.topologySpreadConstraints }}
  {{- toYaml .values.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "imcloud.selectorLabels" (dict "root" .root "role" .role) | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "imcloud.selectorLabels" (dict "root" .root "role" .role) | nindent 8 }}
{{- end }}
{{- end }}

{{/* The pod template's metadata and spec head shared by every role. Call with
(dict "root" $ "role" "comet" "values" .Values.comet). */}}
{{- define "imcloud.podMeta" -}}
metadata:
  labels:
    {{- include "imcloud.selectorLabels" (dict "root" .root "role" .role) | nindent 4 }}
    {{- with .values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
    {{- with .values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
