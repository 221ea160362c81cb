{{/* Names, labels and the list of components every per-component template ranges over. */}}

{{- define "mx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mx.fullname" -}}
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

{{/* The name of one component's resources. Args: root, name. */}}
{{- define "mx.componentName" -}}
{{- printf "%s-%s" (include "mx.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component. Args: root, name. */}}
{{- define "mx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mx.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* All labels of one component. Args: root, name. */}}
{{- define "mx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "mx.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "mx.name" .root }}
{{- end -}}

{{- define "mx.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The services as a YAML list, one entry per Deployment:
  name       component name (registry-<instance>, exchange, verification)
  module     the Python module (`python -m <module> serve|migrate`)
  values     the component's values (a registry instance merged over `registry`)
  env        component-only plain environment
  secretEnv  component-only environment from Secrets: VAR -> {name, key}
*/}}
{{- define "mx.components" -}}
{{- $out := list -}}
{{- $registry := omit .Values.registry "instances" -}}
{{- range $inst := .Values.registry.instances -}}
{{- $v := mergeOverwrite (deepCopy $registry) (deepCopy $inst) -}}
{{- $name := printf "registry-%s" $inst.name -}}
{{- $kek := default $.Values.secrets.keyEncryptionKey $inst.keyEncryptionKeySecret -}}
{{- $out = append $out (dict
    "name" $name "module" "services.registry" "values" $v
    "env" (dict "SERVICE_NAME" $name "JURISDICTIONS" (join "," $inst.jurisdictions))
    "secretEnv" (dict "KEY_ENCRYPTION_KEY" $kek)) -}}
{{- end -}}
{{- $ex := .Values.exchange -}}
{{- $out = append $out (dict
    "name" "exchange" "module" "services.migrant_exchange" "values" $ex
    "env" (dict "SERVICE_NAME" "migrant_exchange"
                "FEEDBACK_DEADLINE_SECONDS" (toString (int64 $ex.feedbackDeadlineSeconds)))
    "secretEnv" dict) -}}
{{- $ve := .Values.verification -}}
{{- $out = append $out (dict
    "name" "verification" "module" "services.verification" "values" $ve
    "env" (dict "SERVICE_NAME" "verification"
                "RATE_LIMIT_PER_MINUTE" (toString (int64 $ve.rateLimitPerMinute)))
    "secretEnv" dict) -}}
{{- $seen := list -}}
{{- range $out -}}
{{- if has .name $seen -}}{{- fail (printf "registry.instances: the name of %q is used twice" .name) -}}{{- end -}}
{{- $seen = append $seen .name -}}
{{- $a := .values.autoscaling -}}
{{- if and $a.enabled (gt (int64 $a.minReplicas) (int64 $a.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling: minReplicas (%v) is above maxReplicas (%v)" .name $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Every Kafka topic of the exchange, each followed by its dead-letter topic. */}}
{{- define "mx.topics" -}}
{{- $topics := list -}}
{{- range list "vital.person.v1" "vital.marriage.v1" "vital.migration.v1" "vital.pregnancy.v1"
      "vital.birth.v1" "vital.correction.v1" "certificate.lifecycle.v1"
      "exchange.notification.v1" "exchange.feedback.v1" -}}
{{- $topics = append $topics . -}}
{{- $topics = append $topics (printf "%s.dlq" .) -}}
{{- end -}}
{{- toYaml $topics -}}
{{- end -}}
