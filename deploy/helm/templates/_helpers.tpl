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

{{/* A number as an environment value: whole numbers without a decimal point or exponent. */}}
{{- define "mx.number" -}}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end -}}
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
  files      file name -> content, a ConfigMap mounted at /etc/migrant-exchange/files (serving pods)
  callers    components of the release that call this one over HTTP (its NetworkPolicy admits them)
  calls      components of the release this one calls over HTTP (its NetworkPolicy lets it reach them)
*/}}
{{- define "mx.components" -}}
{{- $out := list -}}
{{- $port := int64 .Values.service.port -}}
{{- $registryUrls := dict -}}
{{- $keyUrls := list -}}
{{- $registries := list -}}
{{- $registry := omit .Values.registry "instances" -}}
{{- /* Certificates reference the verification service's status lists (IETF Token Status List):
       its public address when one is configured, else its address inside the cluster. */ -}}
{{- $veUrl := printf "http://%s.%s.svc:%d" (include "mx.componentName" (dict "root" $ "name" "verification")) $.Release.Namespace $port -}}
{{- $statusLists := printf "%s/v1/status-lists" (trimSuffix "/" (default $veUrl .Values.verification.publicUrl)) -}}
{{- /* The agreements: the exchange routes by them, registries answer counterparts' reads by them. */ -}}
{{- $agreementFiles := dict -}}
{{- with .Values.exchange.agreements -}}
{{- $_ := set $agreementFiles "agreements.yaml" (toYaml .) -}}
{{- end -}}
{{- range $inst := .Values.registry.instances -}}
{{- $v := mergeOverwrite (deepCopy $registry) (deepCopy $inst) -}}
{{- $name := printf "registry-%s" $inst.name -}}
{{- $kek := default $.Values.secrets.keyEncryptionKey $inst.keyEncryptionKeySecret -}}
{{- $url := printf "http://%s.%s.svc:%d" (include "mx.componentName" (dict "root" $ "name" $name)) $.Release.Namespace $port -}}
{{- range $inst.jurisdictions }}{{ $_ := set $registryUrls . $url }}{{ end -}}
{{- $keyUrls = append $keyUrls (printf "%s=%s/v1/keys" (join "+" $inst.jurisdictions) $url) -}}
{{- $registries = append $registries $name -}}
{{- $regEnv := dict "SERVICE_NAME" $name "JURISDICTIONS" (join "," $inst.jurisdictions)
                "CERTIFICATE_VALIDITY_DAYS" (toString (int64 $v.certificateValidityDays))
                "KEY_ROTATION_OVERLAP_DAYS" (toString (int64 $v.keyRotationOverlapDays))
                "STATUS_LIST_BASE_URL" $statusLists -}}
{{- if $agreementFiles }}{{ $_ := set $regEnv "AGREEMENTS_FILE" "/etc/migrant-exchange/files/agreements.yaml" }}{{ end -}}
{{- $out = append $out (dict
    "name" $name "module" "services.registry" "values" $v
    "env" $regEnv "secretEnv" (dict "KEY_ENCRYPTION_KEY" $kek) "files" $agreementFiles
    "callers" (list "exchange" "verification")) -}}
{{- end -}}
{{- $ex := .Values.exchange -}}
{{- $rec := $ex.reconciliation -}}
{{- $n := $ex.notifications -}}
{{- $d := $ex.dashboard -}}
{{- $t := $d.thresholds -}}
{{- $urls := list -}}
{{- range $code, $url := mergeOverwrite $registryUrls $rec.registryUrls -}}
{{- $urls = append $urls (printf "%s=%s" $code $url) -}}
{{- end -}}
{{- $exEnv := dict "SERVICE_NAME" "migrant_exchange"
    "FEEDBACK_DEADLINE_SECONDS" (toString (int64 $ex.feedbackDeadlineSeconds))
    "OVERDUE_SWEEP_INTERVAL" (include "mx.number" $ex.overdueSweepIntervalSeconds)
    "SEQUENCE_GAP_SECONDS" (include "mx.number" $ex.sequenceGapSeconds)
    "RETENTION_NOTIFICATION_PAYLOAD_DAYS" (include "mx.number" .Values.retention.notificationPayloadDays)
    "RETENTION_UNANSWERED_PAYLOAD_DAYS" (include "mx.number" .Values.retention.unansweredPayloadDays)
    "RETENTION_PARKED_EVENT_DAYS" (include "mx.number" .Values.retention.parkedEventDays)
    "NOTIFICATION_RETRY_SECONDS" (include "mx.number" $n.retrySeconds)
    "NOTIFICATION_RETRY_CAP_SECONDS" (include "mx.number" $n.retryCapSeconds)
    "NOTIFICATION_MAX_ATTEMPTS" (toString (int64 $n.maxAttempts))
    "REGISTRY_URLS" (join "," (sortAlpha $urls))
    "RECONCILIATION_BUCKETS" (toString (int64 $rec.buckets))
    "RECONCILIATION_INTERVAL_SECONDS" (include "mx.number" $rec.intervalSeconds)
    "RECONCILIATION_TIMEOUT_SECONDS" (include "mx.number" $rec.timeoutSeconds)
    "DASHBOARD_INTERVAL" (include "mx.number" $d.intervalSeconds)
    "DASHBOARD_FLOWS_EVERY" (toString (int64 $d.flowsEvery))
    "DASHBOARD_INDICATORS_EVERY" (toString (int64 $d.indicatorsEvery))
    "DASHBOARD_PERIOD_HOURS" (include "mx.number" $d.periodHours)
    "DASHBOARD_GROUP_LAG_INTERVAL" (include "mx.number" $d.groupLagIntervalSeconds)
    "DASHBOARD_OVERDUE_NOTIFICATIONS" (toString (int64 $t.overdueNotifications))
    "DASHBOARD_OLDEST_OPEN_SECONDS" (include "mx.number" $t.oldestOpenSeconds)
    "DASHBOARD_CONSUMER_LAG" (toString (int64 $t.consumerLag))
    "DASHBOARD_OUTBOX_AGE_SECONDS" (include "mx.number" $t.outboxAgeSeconds)
    "DASHBOARD_DEAD_LETTERS" (toString (int64 $t.deadLetters))
    "DASHBOARD_TIMELY_FEEDBACK_RATE" (include "mx.number" $t.timelyFeedbackRate)
    "DASHBOARD_RECONCILIATION_ACCURACY" (include "mx.number" $t.reconciliationAccuracy) -}}
{{- $exSecrets := dict -}}
{{- if $rec.tokenSecret.name }}{{ $_ := set $exSecrets "REGISTRY_TOKEN" $rec.tokenSecret }}{{ end -}}
{{- $exFiles := $agreementFiles -}}
{{- /* Read at start by the serving pods only; the migrate Job has the variable but not the file. */ -}}
{{- if $agreementFiles }}{{ $_ := set $exEnv "AGREEMENTS_FILE" "/etc/migrant-exchange/files/agreements.yaml" }}{{ end -}}
{{- $out = append $out (dict
    "name" "exchange" "module" "services.migrant_exchange" "values" $ex
    "env" $exEnv "secretEnv" $exSecrets "files" $exFiles "calls" $registries) -}}
{{- $ve := .Values.verification -}}
{{- $audit := $ve.audit -}}
{{- $veSecrets := dict -}}
{{- if $ve.statusList.signingKeySecret.name -}}
{{- $_ := set $veSecrets "STATUS_LIST_SIGNING_KEY" $ve.statusList.signingKeySecret -}}
{{- else if eq .Values.environment "production" -}}
{{- fail "verification.statusList.signingKeySecret.name: the status-list signing key must come from a Secret in production" -}}
{{- end -}}
{{- $veEnv := dict "SERVICE_NAME" "verification"
    "RATE_LIMIT_PER_MINUTE" (toString (int64 $ve.rateLimitPerMinute))
    "RATE_LIMIT_BURST" (toString (int64 $ve.rateLimitBurst))
    "REGISTRY_KEY_URLS" (join "," (concat $keyUrls $ve.registryKeyUrls | uniq))
    "KEY_REFRESH_SECONDS" (include "mx.number" $ve.keyRefreshSeconds)
    "AUDIT_FLUSH_INTERVAL" (include "mx.number" $audit.flushIntervalSeconds)
    "AUDIT_BATCH_MAX" (toString (int64 $audit.batchMax))
    "AUDIT_CHAIN_INTERVAL" (include "mx.number" $audit.chainIntervalSeconds)
    "AUDIT_CONCURRENT_FLUSHES" (toString (int64 $audit.concurrentFlushes))
    "STATUS_LIST_VALIDITY_SECONDS" (toString (int64 $ve.statusList.validitySeconds))
    "STATUS_LIST_TTL_SECONDS" (toString (int64 $ve.statusList.ttlSeconds))
    "RETENTION_CORRECTION_AHEAD_DAYS" (include "mx.number" .Values.retention.correctionAheadDays) -}}
{{- if $ve.publicUrl }}{{ $_ := set $veEnv "PUBLIC_URL" (trimSuffix "/" $ve.publicUrl) }}{{ end -}}
{{- $out = append $out (dict
    "name" "verification" "module" "services.verification" "values" $ve
    "env" $veEnv "secretEnv" $veSecrets "calls" $registries) -}}
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

{{/* Every Kafka topic of the exchange, each followed by its dead-letter topic, and the audit checkpoints. */}}
{{- define "mx.topics" -}}
{{- $topics := list -}}
{{- range list "vital.person.v1" "vital.marriage.v1" "vital.migration.v1" "vital.pregnancy.v1"
      "vital.birth.v1" "vital.correction.v1" "certificate.lifecycle.v1"
      "exchange.notification.v1" "exchange.feedback.v1" "audit.disclosure.v1" -}}
{{- $topics = append $topics . -}}
{{- $topics = append $topics (printf "%s.dlq" .) -}}
{{- end -}}
{{- $topics = append $topics "audit.checkpoint.v1" -}}
{{- toYaml $topics -}}
{{- end -}}
