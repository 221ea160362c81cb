{{/*
The pod every component runs: one named template for the Deployments and for the
hook Jobs, so a service and its migrations see the same configuration.
*/}}

{{/*
The Kafka identity of a component: kafka.sasl overridden by values.kafkaSasl. Its username is
the component's own principal (and KafkaUser name) unless one is named: <fullname>-<component>;
the password comes from the Secret the User Operator writes for that KafkaUser unless one is named.
*/}}
{{- define "mx.sasl" -}}
{{- $s := mergeOverwrite (deepCopy .root.Values.kafka.sasl) (deepCopy (default dict .c.values.kafkaSasl)) -}}
{{- if not $s.username -}}
{{- $_ := set $s "username" (include "mx.componentName" (dict "root" .root "name" .c.name)) -}}
{{- end -}}
{{- if not $s.passwordSecret.name -}}
{{- $_ := set $s "passwordSecret" (dict "name" $s.username "key" $s.passwordSecret.key) -}}
{{- end -}}
{{- toYaml $s -}}
{{- end -}}

{{/* The component's Kafka principal: its SCRAM username, or the CN of its client certificate. */}}
{{- define "mx.kafkaPrincipal" -}}
{{- (include "mx.sasl" . | fromYaml).username -}}
{{- end -}}

{{- define "mx.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{/* Mutual TLS: each component presents its own client certificate (security protocol SSL). */}}
{{- define "mx.mtlsEnabled" -}}
{{- if eq .Values.kafka.securityProtocol "SSL" -}}true{{- end -}}
{{- end -}}

{{/* Plain (non-secret) environment of a component as a YAML map. Args: root, c. */}}
{{- define "mx.envDict" -}}
{{- $v := .root.Values -}}
{{- $e := dict
    "ENVIRONMENT" $v.environment
    "LOG_LEVEL" $v.logLevel
    "GC_GEN0_THRESHOLD" (toString (int64 $v.gcGen0Threshold))
    "CONSUMER_STALL_SECONDS" (toString $v.consumerStallSeconds)
    "CONSUMER_CHECK_INTERVAL" (toString $v.consumerCheckInterval)
    "SHUTDOWN_TIMEOUT" (toString (int64 $v.shutdownTimeoutSeconds))
    "RETENTION_INTERVAL_SECONDS" (include "mx.number" $v.retention.intervalSeconds)
    "RETENTION_IDEMPOTENCY_SECONDS" (include "mx.number" $v.retention.idempotencySeconds)
    "RETENTION_DEAD_LETTER_DAYS" (include "mx.number" $v.retention.deadLetterDays)
    "LOG_JSON" (toString $v.logJson)
    "OTEL_EXPORTER" $v.otel.exporter
    "KAFKA_BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
    "KAFKA_SECURITY_PROTOCOL" $v.kafka.securityProtocol
    "KAFKA_TOPIC_PARTITIONS" (toString (int64 $v.kafka.topics.partitions))
    "KAFKA_TOPIC_REPLICATION" (toString (int64 $v.kafka.topics.replication))
    "HOME" "/tmp"
    "PYTHONDONTWRITEBYTECODE" "1"
    "PYTHONUNBUFFERED" "1"
    "TRUST_LIST_FILE" "/etc/migrant-exchange/trust/trust-list.yaml" -}}
{{- with (dig "eventKeysSecret" "name" "" .c.values) -}}
{{- $_ := set $e "EVENT_KEYS_FILE" (printf "/etc/migrant-exchange/event-keys/%s" $.c.values.eventKeysSecret.key) -}}
{{- end -}}
{{- if $v.otel.endpoint }}{{ $_ := set $e "OTEL_ENDPOINT" $v.otel.endpoint }}{{ end -}}
{{- if include "mx.saslEnabled" .root -}}
{{- $sasl := include "mx.sasl" . | fromYaml -}}
{{- $_ := set $e "KAFKA_SASL_MECHANISM" $sasl.mechanism -}}
{{- $_ := set $e "KAFKA_SASL_USERNAME" $sasl.username -}}
{{- end -}}
{{- if $v.kafka.tls.caSecret.name -}}
{{- $_ := set $e "KAFKA_SSL_CAFILE" (printf "/etc/migrant-exchange/kafka-ca/%s" $v.kafka.tls.caSecret.key) -}}
{{- end -}}
{{- if include "mx.mtlsEnabled" .root -}}
{{- $_ := set $e "KAFKA_SSL_CERTFILE" (printf "/etc/migrant-exchange/kafka-client/%s" $v.kafka.tls.clientCertKey) -}}
{{- $_ := set $e "KAFKA_SSL_KEYFILE" (printf "/etc/migrant-exchange/kafka-client/%s" $v.kafka.tls.clientKeyKey) -}}
{{- end -}}
{{- if .c.values.databaseSecret -}}
{{- $_ := set $e "HOST" "0.0.0.0" -}}
{{- $_ := set $e "PORT" "8000" -}}
{{- $_ := set $e "DB_POOL_MIN" (toString (int64 .c.values.dbPool.min)) -}}
{{- $_ := set $e "DB_POOL_MAX" (toString (int64 .c.values.dbPool.max)) -}}
{{- $_ := set $e "RUN_BACKGROUND" (toString .c.values.runBackground) -}}
{{- $_ := set $e "OUTBOX_POLL_INTERVAL" (include "mx.number" .c.values.outbox.pollIntervalSeconds) -}}
{{- $_ := set $e "OUTBOX_BATCH_SIZE" (toString (int64 .c.values.outbox.batchSize)) -}}
{{- $_ := set $e "OUTBOX_REPLAY_WINDOW" (include "mx.number" .c.values.outbox.replayWindowSeconds) -}}
{{- $_ := set $e "OUTBOX_STALL_SECONDS" (include "mx.number" .c.values.outbox.stallSeconds) -}}
{{- $_ := set $e "CONSUMER_MAX_RETRIES" (toString (int64 .c.values.consumerMaxRetries)) -}}
{{- $_ := set $e "CONSUMER_FETCH_MAX_WAIT_MS" (toString (int64 .c.values.consumerFetchMaxWaitMs)) -}}
{{- $_ := set $e "BACKGROUND_FETCH_MAX_WAIT_MS" (toString (int64 .c.values.backgroundFetchMaxWaitMs)) -}}
{{- $_ := set $e "CLIENTS_FILE" (printf "/etc/migrant-exchange/clients/%s" $v.secrets.clients.key) -}}
{{- $_ := set $e "AUDIT_CHECKPOINT_INTERVAL" (include "mx.number" $v.audit.checkpointIntervalSeconds) -}}
{{- if and .job .c.values.databaseServiceRole -}}
{{- $_ := set $e "DATABASE_SERVICE_ROLE" .c.values.databaseServiceRole -}}
{{- end -}}
{{- end -}}
{{- toYaml (merge (deepCopy .c.env) $e) -}}
{{- end -}}

{{/* Environment from existing Secrets, as a list of EnvVar. Args: root, c. */}}
{{- define "mx.secretEnv" -}}
{{- $refs := deepCopy .c.secretEnv -}}
{{- if .c.values.databaseSecret -}}
{{- $_ := set $refs "DATABASE_URL" .c.values.databaseSecret -}}
{{- $_ := set $refs "SUBJECT_KEY_SECRET" .root.Values.secrets.subjectKey -}}
{{- $_ := set $refs "AUDIT_CHECKPOINT_KEY" (dict "name" .root.Values.secrets.auditCheckpointKeys.name "key" .c.name) -}}
{{- $migration := default (dict "name" "") .c.values.databaseMigrationSecret -}}
{{- if and .job $migration.name -}}
{{- $_ := set $refs "DATABASE_MIGRATION_URL" $migration -}}
{{- end -}}
{{- end -}}
{{- if include "mx.saslEnabled" .root -}}
{{- $sasl := include "mx.sasl" . | fromYaml -}}
{{- $_ := set $refs "KAFKA_SASL_PASSWORD" $sasl.passwordSecret -}}
{{- end -}}
{{- range $var := keys $refs | sortAlpha }}
{{- $ref := get $refs $var }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name | quote }}
      key: {{ $ref.key | quote }}
{{- end -}}
{{- end -}}

{{/*
A pod template. Args: root, c (a component), args (the command's last word),
label (the pod's component label), job (true for a hook Job: inline env, no probes,
restartPolicy Never).
*/}}
{{- define "mx.pod" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $v := $root.Values -}}
{{- $ctx := dict "root" $root "name" .label -}}
metadata:
  labels:
    {{- include "mx.selectorLabels" $ctx | nindent 4 }}
    app.kubernetes.io/part-of: {{ include "mx.name" $root }}
  {{- $ann := deepCopy (default dict $c.values.podAnnotations) }}
  {{- if not .job }}
  {{- $config := include "mx.envDict" . }}
  {{- with $c.files }}{{ $config = print $config (toYaml .) }}{{ end }}
  {{- $_ := set $ann "checksum/config" ($config | sha256sum) }}
  {{- /* a process reads the trust list once: a key removed from it must roll every pod */}}
  {{- $_ := set $ann "checksum/trust-list" (toYaml $v.trust.list | sha256sum) }}
  {{- if $v.metrics.podAnnotations }}
  {{- $_ := merge $ann (dict "prometheus.io/scrape" "true" "prometheus.io/port" "8000" "prometheus.io/path" "/metrics") }}
  {{- end }}
  {{- end }}
  {{- with $ann }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if .job }}
  restartPolicy: Never
  {{- else }}
  serviceAccountName: {{ include "mx.componentName" (dict "root" $root "name" $c.name) }}
  # uvicorn's 5 s for open connections, then SHUTDOWN_TIMEOUT, then a margin: the kill comes last.
  terminationGracePeriodSeconds: {{ add (int64 $v.shutdownTimeoutSeconds) 15 }}
  {{- end }}
  automountServiceAccountToken: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    {{- toYaml $v.podSecurityContext | nindent 4 }}
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: {{ .args }}
      image: {{ include "mx.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["python", "-m", {{ $c.module | quote }}, {{ .args | quote }}]
      {{- $secretEnv := include "mx.secretEnv" . | trim }}
      {{- if .job }}
      env:
        {{- range $k, $val := include "mx.envDict" . | fromYaml }}
        - name: {{ $k }}
          value: {{ $val | quote }}
        {{- end }}
      {{- else }}
      envFrom:
        - configMapRef:
            name: {{ include "mx.componentName" (dict "root" $root "name" $c.name) }}
      env:
      {{- end }}
        {{- with $secretEnv }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $c.values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if not .job }}
      ports:
        - name: http
          containerPort: 8000
          protocol: TCP
      startupProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 5
        failureThreshold: 24
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 3
      {{- end }}
      resources:
        {{- toYaml $c.values.resources | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: trust-list
          mountPath: /etc/migrant-exchange/trust
          readOnly: true
        {{- if (dig "eventKeysSecret" "name" "" $c.values) }}
        - name: event-keys
          mountPath: /etc/migrant-exchange/event-keys
          readOnly: true
        {{- end }}
        {{- if $c.values.databaseSecret }}
        - name: clients
          mountPath: /etc/migrant-exchange/clients
          readOnly: true
        {{- end }}
        {{- if $v.kafka.tls.caSecret.name }}
        - name: kafka-ca
          mountPath: /etc/migrant-exchange/kafka-ca
          readOnly: true
        {{- end }}
        {{- if include "mx.mtlsEnabled" $root }}
        - name: kafka-client
          mountPath: /etc/migrant-exchange/kafka-client
          readOnly: true
        {{- end }}
        {{- if and $c.files (not .job) }}
        - name: files
          mountPath: /etc/migrant-exchange/files
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.tmpSizeLimit }}
    - name: trust-list
      configMap:
        name: {{ include "mx.componentName" (dict "root" $root "name" "trust-list") }}
    {{- if (dig "eventKeysSecret" "name" "" $c.values) }}
    - name: event-keys
      secret:
        secretName: {{ $c.values.eventKeysSecret.name }}
        items:
          - key: {{ $c.values.eventKeysSecret.key }}
            path: {{ $c.values.eventKeysSecret.key }}
    {{- end }}
    {{- if $c.values.databaseSecret }}
    - name: clients
      secret:
        secretName: {{ $v.secrets.clients.name }}
        items:
          - key: {{ $v.secrets.clients.key }}
            path: {{ $v.secrets.clients.key }}
    {{- end }}
    {{- if $v.kafka.tls.caSecret.name }}
    - name: kafka-ca
      secret:
        secretName: {{ $v.kafka.tls.caSecret.name }}
        items:
          - key: {{ $v.kafka.tls.caSecret.key }}
            path: {{ $v.kafka.tls.caSecret.key }}
    {{- end }}
    {{- if include "mx.mtlsEnabled" $root }}
    - name: kafka-client
      secret:
        # The Secret the User Operator writes for the component's KafkaUser (its client certificate).
        secretName: {{ include "mx.kafkaPrincipal" . }}
        items:
          - key: {{ $v.kafka.tls.clientCertKey }}
            path: {{ $v.kafka.tls.clientCertKey }}
          - key: {{ $v.kafka.tls.clientKeyKey }}
            path: {{ $v.kafka.tls.clientKeyKey }}
    {{- end }}
    {{- if and $c.files (not .job) }}
    - name: files
      configMap:
        name: {{ include "mx.componentName" (dict "root" $root "name" (printf "%s-files" $c.name)) }}
    {{- end }}
  {{- with $c.values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
