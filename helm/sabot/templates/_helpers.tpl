{{/*
Names. With the release called "sabot" (or any name containing it) the objects are named
sabot-coordinator and sabot-worker, the names the README's kubectl and curl commands use.
*/}}
{{- define "sabot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sabot.fullname" -}}
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

{{- define "sabot.coordinatorName" -}}
{{- printf "%s-coordinator" (include "sabot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sabot.workerName" -}}
{{- printf "%s-worker" (include "sabot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sabot.configMapName" -}}
{{- printf "%s-config" (include "sabot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sabot.dataClaimName" -}}
{{- default (printf "%s-data" (include "sabot.coordinatorName" .)) .Values.coordinator.persistence.existingClaim -}}
{{- end -}}

{{- define "sabot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sabot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sabot.clusterKeySecretName" -}}
{{- default (printf "%s-cluster-key" (include "sabot.fullname" .)) .Values.clusterKey.existingSecret -}}
{{- end -}}

{{- define "sabot.authSecretName" -}}
{{- default (printf "%s-auth" (include "sabot.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "sabot.authEnabled" -}}
{{- if or .Values.auth.token .Values.auth.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "sabot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels */}}
{{- define "sabot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sabot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sabot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sabot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sabot
{{- end -}}

{{/* Component labels: call with (dict "root" $ "component" "worker"). */}}
{{- define "sabot.componentSelectorLabels" -}}
{{ include "sabot.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sabot.componentLabels" -}}
{{ include "sabot.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
A value for an environment variable. Helm reads numbers from values as float64, which
"toString" would print as 1e+06; whole numbers are printed as integers instead.
*/}}
{{- define "sabot.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
The cluster secret: the given value, else the one already stored in the release's Secret
(lookup, so an upgrade keeps it: changing it would lock every running worker out), else a new
random 256-bit key as 64 hex digits. Returns the base64 of the value.
*/}}
{{- define "sabot.clusterKeyB64" -}}
{{- if .Values.clusterKey.value -}}
{{- .Values.clusterKey.value | b64enc -}}
{{- else -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "sabot.clusterKeySecretName" .) | default dict -}}
{{- $data := get $secret "data" | default dict -}}
{{- if hasKey $data .Values.clusterKey.key -}}
{{- index $data .Values.clusterKey.key -}}
{{- else -}}
{{- randAlphaNum 64 | sha256sum | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by both Deployments: call with (dict "root" $ "role" .Values.worker). */}}
{{- define "sabot.podSpecCommon" -}}
serviceAccountName: {{ include "sabot.serviceAccountName" .root }}
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .role.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Env shared by both roles (after the role's own). */}}
{{- define "sabot.envCommon" -}}
- name: SABOT_HOST
  value: "0.0.0.0"
- name: SABOT_DATA_DIR
  value: {{ .Values.dataDir | quote }}
- name: SABOT_CLUSTER_KEY_FILE
  value: {{ printf "%s/%s" .Values.clusterKey.mountPath .Values.clusterKey.key | quote }}
{{- if include "sabot.authEnabled" . }}
# The token as a file of the mounted Secret, not an env var: it stays out of the process's
# environment (/proc/<pid>/environ) and of `kubectl describe`.
- name: SABOT_AUTH_TOKEN_FILE
  value: {{ printf "%s/%s" .Values.auth.mountPath .Values.auth.key | quote }}
{{- end }}
{{- end -}}

{{/* Prometheus scrape annotations for a pod: call with (dict "root" $ "port" 8080). */}}
{{- define "sabot.scrapeAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* Probes on the container's own named port "http". */}}
{{- define "sabot.probes" -}}
startupProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.timeoutSeconds }}
livenessProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /ready
    port: http
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.timeoutSeconds }}
{{- end -}}

{{/* Writable volumes (the root file system is read-only) and the cluster secret. */}}
{{- define "sabot.volumeMountsCommon" -}}
- name: tmp
  mountPath: /tmp
- name: shm
  mountPath: /dev/shm
- name: data
  mountPath: {{ .Values.dataDir }}
- name: cluster-key
  mountPath: {{ .Values.clusterKey.mountPath }}
  readOnly: true
{{- if include "sabot.authEnabled" . }}
- name: auth-token
  mountPath: {{ .Values.auth.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sabot.volumesCommon" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
# numpy and Arrow morsels reach a node's worker processes through /dev/shm; a container's own
# is 64 MiB, so larger inputs would fall back to pipes
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shmSizeLimit }}
- name: cluster-key
  secret:
    secretName: {{ include "sabot.clusterKeySecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.clusterKey.key }}
        path: {{ .Values.clusterKey.key }}
{{- if include "sabot.authEnabled" . }}
- name: auth-token
  secret:
    secretName: {{ include "sabot.authSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.auth.key }}
        path: {{ .Values.auth.key }}
{{- end }}
{{- end -}}
