{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "faultline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name; the release name alone when it already contains the chart name.
*/}}
{{- define "faultline.fullname" -}}
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

{{- define "faultline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faultline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faultline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "faultline.labels" -}}
helm.sh/chart: {{ include "faultline.chart" . }}
{{ include "faultline.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: faultline
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "faultline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "faultline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "faultline.headlessName" -}}
{{- printf "%s-headless" (include "faultline.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "faultline.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" when the state database is the embedded SQLite file (no PostgreSQL Secret given).
*/}}
{{- define "faultline.sqliteState" -}}
{{- if not .Values.state.postgres.existingSecret }}true{{ end }}
{{- end }}

{{/*
"true" when each replica gets a PersistentVolumeClaim for its SQLite file.
*/}}
{{- define "faultline.stateClaim" -}}
{{- if and (include "faultline.sqliteState" .) .Values.state.persistence.enabled }}true{{ end }}
{{- end }}

{{/*
"true" when a replica owns a volume that must follow it (the SQLite file on a claim, or
the forwarder's on-disk queue): the workload is then a StatefulSet, else a Deployment.
*/}}
{{- define "faultline.persistent" -}}
{{- if or (include "faultline.stateClaim" .) .Values.forward.queue.persistence.enabled }}true{{ end }}
{{- end }}

{{/*
The StatefulSet's claim retention: one policy covers every claim, so Retain wins when
the state and forward-queue claims ask for different ones.
Arguments: dict "root" $ "field" "whenDeleted"|"whenScaled".
*/}}
{{- define "faultline.claimRetention" -}}
{{- $field := .field }}
{{- $root := .root }}
{{- $policies := list }}
{{- if include "faultline.stateClaim" $root }}
{{- $policies = append $policies (index $root.Values.state.persistence.retentionPolicy $field) }}
{{- end }}
{{- if $root.Values.forward.queue.persistence.enabled }}
{{- $policies = append $policies (index $root.Values.forward.queue.persistence.retentionPolicy $field) }}
{{- end }}
{{- ternary "Retain" "Delete" (has "Retain" $policies) }}
{{- end }}

{{/*
Kubernetes kills the pod terminationGracePeriodSeconds after SIGTERM; faultline needs
shutdownTimeoutSeconds of that to analyse what is buffered and flush, plus time to exit.
*/}}
{{- define "faultline.terminationGracePeriodSeconds" -}}
{{- $shutdown := int .Values.shutdownTimeoutSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdown 10 }}
{{- else }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than shutdownTimeoutSeconds (%d): Kubernetes would kill faultline before it has flushed" $grace $shutdown) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* Where Secrets and the config are mounted; the config file names these paths. */}}
{{- define "faultline.configDir" -}}/etc/faultline/config{{- end }}
{{- define "faultline.tlsDir" -}}/etc/faultline/tls{{- end }}
{{- define "faultline.forwardTlsDir" -}}/etc/faultline/forward-tls{{- end }}
{{- define "faultline.authDir" -}}/etc/faultline/auth{{- end }}
{{- define "faultline.apiAuthDir" -}}/etc/faultline/api-auth{{- end }}
{{- define "faultline.stateUrlDir" -}}/etc/faultline/state-url{{- end }}
{{- define "faultline.stateCaDir" -}}/etc/faultline/state-ca{{- end }}
{{/* The SQLite state's directory (a claim or an emptyDir), and its file. */}}
{{- define "faultline.stateDir" -}}/var/lib/faultline{{- end }}
{{- define "faultline.stateFile" -}}{{ include "faultline.stateDir" . }}/state.db{{- end }}

{{/*
Checks of combinations the schema cannot express; rendered (empty) by the config map.
*/}}
{{- define "faultline.validate" -}}
{{- $p := .Values.forward.queue.persistence }}
{{- if and $p.enabled (not .Values.forward.endpoint) }}
{{- fail "forward.queue.persistence.enabled needs forward.endpoint: the on-disk queue holds spans for the forwarder" }}
{{- end }}
{{- $t := .Values.tls }}
{{- if and $t.existingSecret $t.clientCaKey $t.listeners.api }}
{{- fail "tls.clientCaKey with tls.listeners.api: the kubelet's probes carry no client certificate, so mutual TLS on the API port would fail them; keep api without mutual TLS" }}
{{- end }}
{{- $f := .Values.forward.tls }}
{{- if ne (empty $f.certKey) (empty $f.keyKey) }}
{{- fail "forward.tls.certKey and forward.tls.keyKey go together (a client certificate and its key)" }}
{{- end }}
{{- if and (or $f.caKey $f.certKey) (not $f.existingSecret) }}
{{- fail "forward.tls.caKey/certKey need forward.tls.existingSecret" }}
{{- end }}
{{- $pg := .Values.state.postgres }}
{{- if and $pg.caConfigMap $pg.caSecret }}
{{- fail "state.postgres.caConfigMap and state.postgres.caSecret: give the PostgreSQL CA bundle in one of them, not both" }}
{{- end }}
{{- if and (or $pg.caConfigMap $pg.caSecret) (not $pg.existingSecret) }}
{{- fail "state.postgres.caConfigMap/caSecret need state.postgres.existingSecret: the CA verifies the PostgreSQL server, and without its URL the state is the SQLite file" }}
{{- end }}
{{- end }}

{{/*
TLS keys of one listener. Arguments: dict "root" $ "prefix" "otlp-grpc" "on" bool.
*/}}
{{- define "faultline.listenerTls" -}}
{{- $t := .root.Values.tls }}
{{- if and $t.existingSecret .on }}
{{ .prefix }}-tls-cert-file = {{ printf "%s/%s" (include "faultline.tlsDir" .root) $t.certKey | toJson }}
{{ .prefix }}-tls-key-file = {{ printf "%s/%s" (include "faultline.tlsDir" .root) $t.keyKey | toJson }}
{{- with $t.clientCaKey }}
{{ $.prefix }}-tls-client-ca-file = {{ printf "%s/%s" (include "faultline.tlsDir" $.root) . | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The TOML config file (docs/contract.md §1: keys are the flag names). Strings and lists go through
toJson: a JSON string or array of strings is also a valid TOML basic string or array.
Only options the user set are written, so the binary's defaults stay the defaults.
*/}}
{{- define "faultline.configToml" -}}
{{- include "faultline.validate" . -}}
# Written by the faultline Helm chart ({{ include "faultline.chart" . }}); keys are the flag names.
{{- $listen := .Values.listenAddress }}
{{- $ports := .Values.ports }}
otlp-grpc-listen = {{ printf "%s:%d" (ternary $listen "127.0.0.1" $ports.otlp.enabled) (int $ports.otlp.containerPort) | toJson }}
otlp-http-listen = {{ printf "%s:%d" (ternary $listen "127.0.0.1" (index $ports "otlp-http").enabled) (int (index $ports "otlp-http").containerPort) | toJson }}
http-listen = {{ printf "%s:%d" $listen (int $ports.api.containerPort) | toJson }}
shutdown-timeout = {{ printf "%ds" (int .Values.shutdownTimeoutSeconds) | toJson }}
{{- range $key, $value := .Values.config }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- include "faultline.listenerTls" (dict "root" . "prefix" "otlp-grpc" "on" .Values.tls.listeners.otlp) }}
{{- include "faultline.listenerTls" (dict "root" . "prefix" "otlp-http" "on" .Values.tls.listeners.otlpHttp) }}
{{- include "faultline.listenerTls" (dict "root" . "prefix" "http" "on" .Values.tls.listeners.api) }}
{{- with .Values.auth.existingSecret }}
auth-token-file = {{ printf "%s/%s" (include "faultline.authDir" $) $.Values.auth.key | toJson }}
{{- end }}
{{- with .Values.auth.api.existingSecret }}
api-auth-token-file = {{ printf "%s/%s" (include "faultline.apiAuthDir" $) $.Values.auth.api.key | toJson }}
{{- end }}
{{- $pg := .Values.state.postgres }}
{{- if $pg.existingSecret }}
state-url-file = {{ printf "%s/%s" (include "faultline.stateUrlDir" .) $pg.secretKey | toJson }}
{{- if or $pg.caConfigMap $pg.caSecret }}
state-tls-ca-file = {{ printf "%s/%s" (include "faultline.stateCaDir" .) $pg.caKey | toJson }}
{{- end }}
{{- else }}
state = {{ include "faultline.stateFile" . | toJson }}
{{- end }}
{{- $f := .Values.forward }}
{{- if $f.endpoint }}
forward-endpoint = {{ toJson $f.endpoint }}
{{- with $f.protocol }}
forward-protocol = {{ toJson . }}
{{- end }}
{{- with $f.mode }}
forward-mode = {{ toJson . }}
{{- end }}
{{- with $f.compression }}
forward-compression = {{ toJson . }}
{{- end }}
{{- with $f.timeout }}
forward-timeout = {{ toJson . }}
{{- end }}
{{- with $f.maxElapsed }}
forward-max-elapsed = {{ toJson . }}
{{- end }}
{{- with $f.concurrency }}
forward-concurrency = {{ toJson . }}
{{- end }}
{{- if $f.headers }}
{{- $headers := list }}
{{- range $name, $value := $f.headers }}
{{- $headers = append $headers (printf "%s=%s" $name $value) }}
{{- end }}
forward-header = {{ toJson $headers }}
{{- end }}
{{- with $f.tls.existingSecret }}
{{- with $f.tls.caKey }}
forward-tls-ca-file = {{ printf "%s/%s" (include "faultline.forwardTlsDir" $) . | toJson }}
{{- end }}
{{- with $f.tls.certKey }}
forward-tls-cert-file = {{ printf "%s/%s" (include "faultline.forwardTlsDir" $) . | toJson }}
forward-tls-key-file = {{ printf "%s/%s" (include "faultline.forwardTlsDir" $) $f.tls.keyKey | toJson }}
{{- end }}
{{- end }}
{{- with $f.queue.size }}
forward-queue-size = {{ toJson . }}
{{- end }}
{{- if $f.queue.persistence.enabled }}
forward-queue-dir = {{ toJson $f.queue.persistence.mountPath }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One entry of the StatefulSet's volumeClaimTemplates.
Arguments: dict "root" $ "name" claim-name "persistence" its values (accessModes, size, storageClassName).
*/}}
{{- define "faultline.claimTemplate" -}}
{{- $p := .persistence -}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata:
    name: {{ .name }}
    labels:
      {{- include "faultline.selectorLabels" .root | nindent 6 }}
  spec:
    accessModes:
      {{- toYaml $p.accessModes | nindent 6 }}
    {{- with $p.storageClassName }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ $p.size | quote }}
{{- end }}
