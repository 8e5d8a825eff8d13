{{/*
Names, labels and shared pod settings. Every object the chart renders takes its
name and labels from here.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ballast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name prefix: fullnameOverride, else the release name (+ "-ballast" unless it contains it). */}}
{{- define "ballast.fullname" -}}
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

{{/* "ballast-0.1.0" for the helm.sh/chart label. */}}
{{- define "ballast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "ballast.labels" -}}
helm.sh/chart: {{ include "ballast.chart" . }}
app.kubernetes.io/name: {{ include "ballast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ballast
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include "ballast.selectorLabels" (list . "operator"). */}}
{{- define "ballast.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "ballast.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Labels of one component's objects: include "ballast.componentLabels" (list . "operator"). */}}
{{- define "ballast.componentLabels" -}}
{{ include "ballast.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Object name of a component: <fullname>-<component>. */}}
{{- define "ballast.componentName" -}}
{{- printf "%s-%s" (include "ballast.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ServiceAccount name of a component: include "ballast.serviceAccountName" (list . "operator"). */}}
{{- define "ballast.serviceAccountName" -}}
{{- $root := index . 0 -}}
{{- $sa := (index $root.Values (index . 1)).serviceAccount -}}
{{- if $sa.create }}
{{- default (include "ballast.componentName" .) $sa.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" (index . 1) (index . 1)) $sa.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag, repository:tag@digest or repository@digest. */}}
{{- define "ballast.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end }}

{{/* Is leader election on? "true" or "". */}}
{{- define "ballast.leaderElection" -}}
{{- if or .Values.operator.leaderElection.enabled (gt (int .Values.operator.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Name of the operator's leader-election Lease. */}}
{{- define "ballast.leaseName" -}}
{{- default (include "ballast.componentName" (list . "operator")) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{/* The gateway's in-cluster URL, written into LLMService status.endpoint. */}}
{{- define "ballast.gatewayEndpoint" -}}
{{- if .Values.operator.gatewayEndpoint }}
{{- .Values.operator.gatewayEndpoint }}
{{- else if .Values.gateway.enabled }}
{{- $port := int .Values.gateway.service.port }}
{{- printf "http://%s.%s.svc%s/v1" (include "ballast.componentName" (list . "gateway")) .Release.Namespace (ternary "" (printf ":%d" $port) (eq $port 80)) }}
{{- end }}
{{- end }}

{{/* The restricted pod security context shared by both workloads. */}}
{{- define "ballast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The restricted container security context shared by both workloads. */}}
{{- define "ballast.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod-level scheduling and pull settings of one component: include "ballast.podScheduling" (list . "operator"). */}}
{{- define "ballast.podScheduling" -}}
{{- $root := index . 0 -}}
{{- $c := index $root.Values (index . 1) -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Environment shared by both containers: who and where the pod is. */}}
{{- define "ballast.downwardEnv" -}}
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{- /* Name of the client key Secret the chart creates. */ -}}
{{- define "ballast.gatewayKeySecret" -}}
{{- printf "%s-key" (include "ballast.componentName" (list . "gateway")) -}}
{{- end }}

{{/*
Who may call engine pods, as a JSON list of NetworkPolicyPeer objects: this release's gateway
(when enabled) and operator (its probes), and the namespaces in engineNetworkPolicy.allowNamespaces.
The operator renders one NetworkPolicy per LLMService from it.
*/}}
{{- define "ballast.enginePeers" -}}
{{- $peers := list -}}
{{- $release := dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace) -}}
{{- range $component := list "gateway" "operator" -}}
{{- if or (eq $component "operator") $.Values.gateway.enabled -}}
{{- $pods := include "ballast.selectorLabels" (list $ $component) | fromYaml -}}
{{- $peers = append $peers (dict "namespaceSelector" $release "podSelector" (dict "matchLabels" $pods)) -}}
{{- end -}}
{{- end -}}
{{- range .Values.engineNetworkPolicy.allowNamespaces -}}
{{- $peers = append $peers (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .))) -}}
{{- end -}}
{{- toJson $peers -}}
{{- end -}}

{{- /* The gateway's headless Service the operator reads demand reports through. */ -}}
{{- define "ballast.gatewayInternalService" -}}
{{- printf "%s-internal" (include "ballast.componentName" (list . "gateway")) | trunc 63 | trimSuffix "-" }}
{{- end }}
