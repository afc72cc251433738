{{/* Chart name. */}}
{{- define "scw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix: the release name when it already contains the chart name. */}}
{{- define "scw.fullname" -}}
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

{{/*
Labels of every object. No `app.kubernetes.io/managed-by`: in this project that
label marks objects the webhook itself OWNS (placeholder ServerConfigs, its
Lease) and the placeholder guard keys on it; see docs/reference.md.
*/}}
{{- define "scw.labels" -}}
{{ include "scw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ .Values.partOf }}
{{- end -}}

{{- define "scw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "scw.serviceAccountName" -}}
{{- default (include "scw.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "scw.serviceAccountUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "scw.serviceAccountName" . }}
{{- end -}}

{{/* Secret holding tls.crt / tls.key. */}}
{{- define "scw.tlsSecretName" -}}
{{- if .Values.certManager.enabled -}}
{{- printf "%s-tls" (include "scw.fullname" .) -}}
{{- else -}}
{{- required "certManager.enabled=false needs tls.existingSecret (a kubernetes.io/tls Secret in the release namespace)" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "scw.servingCertificateName" -}}
{{- printf "%s-serving" (include "scw.fullname" .) -}}
{{- end -}}

{{/* Namespaces never sent to the webhook, as a JSON list (deduplicated, order kept). */}}
{{- define "scw.excludedNamespaces" -}}
{{- $l := list "kube-system" .Release.Namespace .Values.controllerNamespace -}}
{{- range .Values.webhook.excludeNamespaces -}}{{- $l = append $l . -}}{{- end -}}
{{- $l | uniq | toJson | replace "\",\"" "\", \"" -}}
{{- end -}}

{{/* Validates values that would otherwise render a broken or unsafe install. */}}
{{- define "scw.validate" -}}
{{- if not (has .Values.onMissing (list "auto" "allow" "deny")) -}}
{{- fail (printf "onMissing must be auto, allow or deny, not %q" .Values.onMissing) -}}
{{- end -}}
{{- if not (has .Values.logFormat (list "json" "text")) -}}
{{- fail (printf "logFormat must be json or text, not %q" .Values.logFormat) -}}
{{- end -}}
{{- range .Values.watchNamespaces -}}
{{- if has . (list "kube-system" $.Release.Namespace $.Values.controllerNamespace) -}}
{{- fail (printf "watchNamespaces must not contain %q: kube-system, the release namespace and the controller namespace are never served" .) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.certManager.enabled) (not .Values.tls.caBundle) -}}
{{- fail "certManager.enabled=false needs tls.caBundle (base64 PEM of the CA that signed tls.existingSecret)" -}}
{{- end -}}
{{- end -}}

{{/* RBAC rules in every served namespace (cluster-wide when watchNamespaces is empty). */}}
{{- define "scw.servedNamespaceRules" -}}
# Webhook caches and sync loop: read Servers and ServerConfigs.
- apiGroups: ["mlops.seldon.io"]
  resources: ["servers", "serverconfigs"]
  verbs: ["get", "list", "watch"]
{{- if .Values.sync.enabled }}
# Sync loop (rollout, heal): watch Server workloads and re-admit one by
# patching its serverconfig-webhook/hash annotation.
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["get", "list", "watch", "patch"]
# Sync loop (heal): a StatefulSet admitted without the webhook that lacks its
# ServerConfig's claim templates (immutable) is deleted, with uid and
# resourceVersion preconditions, for the controller to create it again.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["delete"]
# Sync loop: Events on Servers (events.k8s.io/v1 through kube's Recorder;
# core v1 for older clients and kubectl describe).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
{{- end -}}

{{/*
Seconds in a Go duration of hours, minutes and seconds (`720h`, `2160h0m0s`,
`90m`), as cert-manager takes them; anything else fails the render.
*/}}
{{- define "scw.durationSeconds" -}}
{{- $d := toString .value -}}
{{- if or (not $d) (not (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d)) -}}
{{- fail (printf "%s must be a duration of hours, minutes and seconds (like 720h), not %q" .name $d) -}}
{{- end -}}
{{- $s := 0 -}}
{{- with regexFind "[0-9]+h" $d }}{{ $s = add $s (mul (trimSuffix "h" . | atoi) 3600) }}{{ end -}}
{{- with regexFind "[0-9]+m" $d }}{{ $s = add $s (mul (trimSuffix "m" . | atoi) 60) }}{{ end -}}
{{- with regexFind "[0-9]+s" $d }}{{ $s = add $s (trimSuffix "s" . | atoi) }}{{ end -}}
{{- $s -}}
{{- end -}}

{{/*
The label matchers of this release's series as the ServiceMonitor scrapes
them: prometheus-operator sets `job` to the Service name and `namespace` to
its namespace.
*/}}
{{- define "scw.metricSelector" -}}
job="{{ include "scw.fullname" . }}", namespace="{{ .Release.Namespace }}"
{{- end -}}

{{/* Where the alerts' runbook lives: runbookBaseURL, or docs/runbook.md of the chart's home. */}}
{{- define "scw.runbookURL" -}}
{{- default (printf "%s/blob/main/docs/runbook.md" (trimSuffix "/" .Chart.Home)) .Values.monitoring.prometheusRule.runbookBaseURL -}}
{{- end -}}
