{{/*
The pod template shared by the Deployment and the StatefulSet.
*/}}
{{- define "faultline.podTemplate" -}}
{{- $apiScheme := ternary "HTTPS" "HTTP" (and (not (empty .Values.tls.existingSecret)) .Values.tls.listeners.api) -}}
metadata:
  annotations:
    {{- if .Values.enableConfigChecksumAnnotation }}
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "faultline.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "faultline.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ include "faultline.terminationGracePeriodSeconds" . }}
  containers:
    - name: faultline
      image: {{ include "faultline.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - {{ include "faultline.configDir" . }}/faultline.toml
        {{- range .Values.command.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or (include "faultline.sqliteState" .) .Values.extraEnvs }}
      env:
        {{- if include "faultline.sqliteState" . }}
        {{- /* SQLite's temporary files (large sorts, statement journals) go beside the
        database: the root filesystem is read-only. */}}
        - name: SQLITE_TMPDIR
          value: {{ include "faultline.stateDir" . }}
        {{- end }}
        {{- with .Values.extraEnvs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.extraEnvsFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- range $name, $port := .Values.ports }}
        {{- if $port.enabled }}
        - name: {{ $name }}
          containerPort: {{ $port.containerPort }}
          protocol: {{ $port.protocol }}
        {{- end }}
        {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: api
          scheme: {{ $apiScheme }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: api
          scheme: {{ $apiScheme }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: {{ include "faultline.configDir" . }}
          readOnly: true
        {{- if .Values.tls.existingSecret }}
        - name: tls
          mountPath: {{ include "faultline.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.auth.existingSecret }}
        - name: auth
          mountPath: {{ include "faultline.authDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.auth.api.existingSecret }}
        - name: api-auth
          mountPath: {{ include "faultline.apiAuthDir" . }}
          readOnly: true
        {{- end }}
        {{- if and .Values.forward.endpoint .Values.forward.tls.existingSecret }}
        - name: forward-tls
          mountPath: {{ include "faultline.forwardTlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if include "faultline.sqliteState" . }}
        - name: state
          mountPath: {{ include "faultline.stateDir" . }}
        {{- else }}
        - name: state-url
          mountPath: {{ include "faultline.stateUrlDir" . }}
          readOnly: true
        {{- if or .Values.state.postgres.caConfigMap .Values.state.postgres.caSecret }}
        - name: state-ca
          mountPath: {{ include "faultline.stateCaDir" . }}
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if .Values.forward.queue.persistence.enabled }}
        - name: queue
          mountPath: {{ .Values.forward.queue.persistence.mountPath }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "faultline.fullname" . }}
    {{- /* Whole Secrets, no subPath: Kubernetes then updates rotated files in place. */}}
    {{- if .Values.tls.existingSecret }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if .Values.auth.existingSecret }}
    - name: auth
      secret:
        secretName: {{ .Values.auth.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if .Values.auth.api.existingSecret }}
    - name: api-auth
      secret:
        secretName: {{ .Values.auth.api.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if and .Values.forward.endpoint .Values.forward.tls.existingSecret }}
    - name: forward-tls
      secret:
        secretName: {{ .Values.forward.tls.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- $pg := .Values.state.postgres }}
    {{- if $pg.existingSecret }}
    - name: state-url
      secret:
        secretName: {{ $pg.existingSecret }}
        defaultMode: 0440
    {{- with $pg.caConfigMap }}
    - name: state-ca
      configMap:
        name: {{ . }}
    {{- end }}
    {{- with $pg.caSecret }}
    - name: state-ca
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- else if not .Values.state.persistence.enabled }}
    {{- /* SQLite without a claim: the file lasts as long as the pod. */}}
    - name: state
      emptyDir: {}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
