{{/*
The objects of one component, each a named template taking (root, c) and rendered
by components.yaml for every entry of mx.components. No manifest is written twice.
*/}}

{{- define "mx.serviceAccount" -}}
{{- $n := dict "root" .root "name" .c.name -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
automountServiceAccountToken: false
{{- end -}}

{{- define "mx.configMap" -}}
{{- $n := dict "root" .root "name" .c.name -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
data:
  {{- include "mx.envDict" . | nindent 2 }}
{{- end -}}

{{/* The component's files (e.g. the exchange's agreements), mounted at /etc/migrant-exchange/files. */}}
{{- define "mx.filesConfigMap" -}}
{{- $n := dict "root" .root "name" .c.name -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mx.componentName" (dict "root" .root "name" (printf "%s-files" .c.name)) }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
data:
  {{- range $file, $content := .c.files }}
  {{ $file }}: |
    {{- $content | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Pods of this release's components `names` (a podSelector; no namespaceSelector: this namespace). */}}
{{- define "mx.componentPeer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ include "mx.name" .root }}
    app.kubernetes.io/instance: {{ .root.Release.Name }}
  matchExpressions:
    - key: app.kubernetes.io/component
      operator: In
      values: {{ toJson .names }}
{{- end -}}

{{- define "mx.deployment" -}}
{{- $n := dict "root" .root "name" .c.name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
spec:
  {{- if not .c.values.autoscaling.enabled }}
  replicas: {{ int64 .c.values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "mx.selectorLabels" $n | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  template:
    {{- include "mx.pod" (dict "root" .root "c" .c "args" "serve" "label" .c.name "job" false) | nindent 4 }}
{{- end -}}

{{- define "mx.service" -}}
{{- $n := dict "root" .root "name" .c.name -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
spec:
  type: {{ .root.Values.service.type }}
  selector:
    {{- include "mx.selectorLabels" $n | nindent 4 }}
  ports:
    - name: http
      port: {{ int64 .root.Values.service.port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "mx.pdb" -}}
{{- $n := dict "root" .root "name" .c.name -}}
{{- $pdb := .c.values.pdb -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "mx.selectorLabels" $n | nindent 6 }}
{{- end -}}

{{- define "mx.hpa" -}}
{{- $n := dict "root" .root "name" .c.name -}}
{{- $a := .c.values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mx.componentName" $n }}
  minReplicas: {{ int64 $a.minReplicas }}
  maxReplicas: {{ int64 $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ int64 $a.targetCPUUtilizationPercentage }}
{{- end -}}

{{/* Egress to DNS, Kafka, PostgreSQL and extraEgress only. Used by services and Jobs. */}}
{{- define "mx.egressRules" -}}
{{- $np := .Values.networkPolicy -}}
{{- if $np.dns.enabled }}
- to:
    - namespaceSelector:
        {{- toYaml $np.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml $np.dns.podSelector | nindent 8 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}
{{- range $target := list .Values.kafka.networkPolicy .Values.postgresql.networkPolicy }}
- ports:
    {{- range $target.ports }}
    - {protocol: TCP, port: {{ int64 . }}}
    {{- end }}
  {{- with $target.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with $np.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mx.networkPolicy" -}}
{{- $n := dict "root" .root "name" .c.name -}}
{{- $np := .root.Values.networkPolicy -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "mx.selectorLabels" $n | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - namespaceSelector:
            {{- toYaml $np.ingressController.namespaceSelector | nindent 12 }}
          podSelector:
            {{- toYaml $np.ingressController.podSelector | nindent 12 }}
        {{- with $np.metricsFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - {protocol: TCP, port: http}
    {{- with .c.callers }}
    - from:
        - {{ include "mx.componentPeer" (dict "root" $.root "names" .) | indent 10 | trim }}
      ports:
        - {protocol: TCP, port: http}
    {{- end }}
  egress:
    {{- include "mx.egressRules" .root | trim | nindent 4 }}
    {{- with .c.calls }}
    - to:
        - {{ include "mx.componentPeer" (dict "root" $.root "names" .) | indent 10 | trim }}
      ports:
        - {protocol: TCP, port: 8000}
    {{- end }}
{{- end -}}

{{/* The service's `migrate` command as a pre-install/pre-upgrade hook. */}}
{{- define "mx.migrateJob" -}}
{{- $n := dict "root" .root "name" (printf "%s-migrate" .c.name) -}}
{{- $m := .root.Values.migrations -}}
{{- $c := mergeOverwrite (deepCopy .c) (dict "values" (dict "resources" $m.resources)) -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "mx.componentName" $n }}
  labels:
    {{- include "mx.labels" $n | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ int64 $m.backoffLimit }}
  activeDeadlineSeconds: {{ int64 $m.activeDeadlineSeconds }}
  template:
    {{- include "mx.pod" (dict "root" .root "c" $c "args" "migrate" "label" $n.name "job" true) | nindent 4 }}
{{- end -}}
