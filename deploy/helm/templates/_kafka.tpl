{{/*
What each component's Kafka principal may do (DESIGN.md section 10: the narrowest ACLs), from
what its code reads, writes and consumes as; tests/chart/test_chart_kafka.py checks these against
the services' own consumer factories. Args: root, c (a component of "mx.components", or the
topic Job). A dict: read, write, create (topics), groups (Read) and describeGroups, each group
{name, patternType}.
*/}}
{{- define "mx.kafkaAccess" -}}
{{- $vital := list "vital.person.v1" "vital.marriage.v1" "vital.migration.v1" "vital.pregnancy.v1"
      "vital.birth.v1" "vital.correction.v1" -}}
{{- /* Every service publishes the head of its audit chain, where the chart has that topic. */ -}}
{{- $audit := list -}}
{{- range include "mx.topics" .root | fromYamlArray }}{{ if hasPrefix "audit.checkpoint." . }}{{ $audit = append $audit . }}{{ end }}{{ end -}}
{{- $module := default "" .c.module -}}
{{- $disclosures := "audit.disclosure.v1" -}}
{{- /* Every dead-letter topic: the exchange counts every service's dead letters (dashboard). */ -}}
{{- $dlqs := list -}}
{{- range include "mx.topics" .root | fromYamlArray }}{{ if hasSuffix ".dlq" . }}{{ $dlqs = append $dlqs . }}{{ end }}{{ end -}}
{{- if eq $module "services.registry" -}}
{{- $group := printf "registry-%s" (join "-" (sortAlpha .c.values.jurisdictions)) -}}
{{- /* disclosures of its people others report; its own reads it reports */ -}}
{{- toYaml (dict
    "read" (list "exchange.notification.v1" $disclosures)
    "write" (concat $vital (list "certificate.lifecycle.v1" "exchange.feedback.v1" "exchange.notification.v1.dlq"
                                 $disclosures (printf "%s.dlq" $disclosures)) $audit)
    "groups" (list (dict "name" $group "patternType" "literal")
                   (dict "name" (printf "%s-disclosures" $group) "patternType" "literal"))) -}}
{{- else if eq $module "services.migrant_exchange" -}}
{{- $reads := concat $vital (list "certificate.lifecycle.v1" "exchange.feedback.v1" $disclosures) -}}
{{- /* notifications; feedback a REST-only jurisdiction posts; the disclosures it reports;
     dead letters of what it reads */ -}}
{{- $writes := concat (list "exchange.notification.v1" "exchange.feedback.v1" $disclosures) $audit -}}
{{- range $reads }}{{ $writes = append $writes (printf "%s.dlq" .) }}{{ end -}}
{{- toYaml (dict
    "read" (concat $reads $dlqs)
    "write" $writes
    "groups" (list (dict "name" "migrant-exchange-events" "patternType" "literal")
                   (dict "name" "migrant-exchange-indicators" "patternType" "literal")
                   (dict "name" "migrant-exchange-dead-letters" "patternType" "literal"))
    "describeGroups" (list (dict "name" "registry-" "patternType" "prefix")
                           (dict "name" "migrant-exchange-" "patternType" "prefix")
                           (dict "name" "verification" "patternType" "prefix"))) -}}
{{- else if eq $module "services.verification" -}}
{{- toYaml (dict
    "read" (list "certificate.lifecycle.v1" "vital.correction.v1")
    "write" (concat (list "certificate.lifecycle.v1.dlq" "vital.correction.v1.dlq" $disclosures) $audit)
    "groups" (list (dict "name" "verification" "patternType" "prefix"))) -}}
{{- else if eq $module "shared.topics" -}}
{{- toYaml (dict "create" (include "mx.topics" .root | fromYamlArray)) -}}
{{- else -}}
{{- fail (printf "no Kafka access is defined for the component %q" .c.name) -}}
{{- end -}}
{{- end -}}

{{/*
The ACLs of one Kafka principal (Strimzi simple authorization), as a YAML list. Args: root, c.
Every principal may describe the exchange's topics (the services check at start that they exist)
and create and describe the broker-incarnation marker topics (shared/kafka.py); beyond that only
its "mx.kafkaAccess": no wildcard topic, no cluster operation.
*/}}
{{- define "mx.kafkaAcls" -}}
{{- $k := include "mx.kafkaAccess" . | fromYaml -}}
{{- $acls := list -}}
{{- range $topic := include "mx.topics" .root | fromYamlArray -}}
{{- $ops := list "Describe" -}}
{{- if has $topic (default list $k.read) }}{{ $ops = append $ops "Read" }}{{ end -}}
{{- if has $topic (default list $k.write) }}{{ $ops = append $ops "Write" }}{{ end -}}
{{- if has $topic (default list $k.create) }}{{ $ops = append $ops "Create" }}{{ end -}}
{{- $acls = append $acls (dict "resource" (dict "type" "topic" "name" $topic "patternType" "literal") "operations" $ops) -}}
{{- end -}}
{{- $acls = append $acls (dict "resource" (dict "type" "topic" "name" "_broker.incarnation." "patternType" "prefix")
      "operations" (list "Create" "Describe")) -}}
{{- range (default list $k.groups) -}}
{{- $acls = append $acls (dict "resource" (dict "type" "group" "name" .name "patternType" .patternType) "operations" (list "Read")) -}}
{{- end -}}
{{- range (default list $k.describeGroups) -}}
{{- $acls = append $acls (dict "resource" (dict "type" "group" "name" .name "patternType" .patternType) "operations" (list "Describe")) -}}
{{- end -}}
{{- toYaml $acls -}}
{{- end -}}
