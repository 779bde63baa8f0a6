{{/* Names and labels shared by every template. */}}

{{- define "cbo.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already holds the chart's. */}}
{{- define "cbo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cbo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cbo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cbo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cbo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "cbo.labels" -}}
{{ include "cbo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cassandra-backup-operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
What the operator and kopf call in a watched namespace: read the Secrets a resource names
(get only), list the pods a podSelector picks, manage both kinds and write their status
(never their spec), and post Events. kopf patches metadata.finalizers on both kinds.
*/}}
{{- define "cbo.namespacedRules" -}}
- apiGroups: [backups.cassandra.dev]
  resources: [backupschedules]
  verbs: [get, list, watch, patch]
- apiGroups: [backups.cassandra.dev]
  resources: [backupruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [backups.cassandra.dev]
  resources: [backupschedules/status, backupruns/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- define "cbo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
