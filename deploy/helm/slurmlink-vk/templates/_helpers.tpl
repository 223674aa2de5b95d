{{/* Names and labels. */}}
{{- define "slurmlink-vk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "slurmlink-vk.fullname" -}}
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

{{- define "slurmlink-vk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slurmlink-vk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "slurmlink-vk.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "slurmlink-vk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
slurmlink.io/node: {{ .Values.node.name | quote }}
{{- end -}}

{{- define "slurmlink-vk.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "slurmlink-vk.serviceAccountName" -}}
{{- default (include "slurmlink-vk.fullname" .) .Values.identity.serviceAccount.name -}}
{{- end -}}

{{- define "slurmlink-vk.nodeDeleteName" -}}
{{- printf "%s-node-delete" (include "slurmlink-vk.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every container of the chart. */}}
{{- define "slurmlink-vk.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "slurmlink-vk.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Where things are mounted in the containers (the configs refer to these paths). */}}
{{- define "slurmlink-vk.paths" -}}
config: /etc/slurmlink/config
kubeconfig: /etc/slurmlink/kube/kubeconfig
kubeletTls: /etc/slurmlink/kubelet-tls
clientCA: /etc/slurmlink/client-ca/ca.crt
apiToken: /etc/slurmlink/api-token/token
apiCA: /etc/slurmlink/api-ca/ca.crt
proxyCA: /etc/slurmlink/proxy-ca/ca.crt
serviceToken: /etc/slurmlink/service-token/token
stateDir: /var/lib/slurmlink/vk
{{- end -}}

{{/* The vk's configuration (slurmlink/vk/config.py), from the values. */}}
{{- define "slurmlink-vk.vkConfig" -}}
{{- $paths := include "slurmlink-vk.paths" . | fromYaml -}}
{{- $v := .Values -}}
{{- $node := dict "name" $v.node.name -}}
{{- with $v.node.internalIP }}{{ $_ := set $node "internal_ip" . }}{{ end -}}
{{- with $v.node.hostname }}{{ $_ := set $node "hostname" . }}{{ end -}}
{{- with $v.node.labels }}{{ $_ := set $node "labels" . }}{{ end -}}
{{- with $v.node.taints }}{{ $_ := set $node "taints" . }}{{ end -}}
{{- with $v.node.capacity }}{{ $_ := set $node "capacity" . }}{{ end -}}
{{- with $v.node.kubeletVersion }}{{ $_ := set $node "kubelet_version" . }}{{ end -}}
{{- $kube := dict -}}
{{- if eq $v.identity.mode "nodeCredential" }}{{ $_ := set $kube "kubeconfig" $paths.kubeconfig }}{{ end -}}
{{- $api := dict "batch_status" $v.api.batchStatus -}}
{{- if $v.mode1Api.enabled -}}
{{- $_ := set $api "url" (printf "http://127.0.0.1:%v" $v.mode1Api.port) -}}
{{- else -}}
{{- $_ := set $api "url" $v.api.url -}}
{{- with $v.api.ca.existingConfigMap }}{{ $_ := set $api "ca_file" $paths.apiCA }}{{ end -}}
{{- end -}}
{{- with $v.api.token.existingSecret }}{{ $_ := set $api "token_file" $paths.apiToken }}{{ end -}}
{{- with $v.api.timeoutSeconds }}{{ $_ := set $api "timeout_seconds" . }}{{ end -}}
{{- $x509 := dict -}}
{{- with $v.kubelet.clientCA.existingConfigMap }}{{ $_ := set $x509 "client_ca_file" $paths.clientCA }}{{ end -}}
{{- $authentication := merge (dict "x509" $x509) (deepCopy $v.kubelet.authentication) -}}
{{- $kubelet := dict "host" "0.0.0.0" "port" $v.kubelet.port "tls" $v.kubelet.tls.mode "authentication" $authentication -}}
{{- with $v.kubelet.authorization }}{{ $_ := set $kubelet "authorization" . }}{{ end -}}
{{- if eq $v.kubelet.tls.mode "files" -}}
{{- $_ := set $kubelet "cert_file" (printf "%s/tls.crt" $paths.kubeletTls) -}}
{{- $_ := set $kubelet "key_file" (printf "%s/tls.key" $paths.kubeletTls) -}}
{{- end -}}
{{- if eq $v.kubelet.tls.mode "csr" -}}
{{- /* The key and the issued certificate persist, so a restart needs no new approval. */ -}}
{{- $csr := dict "state_file" (printf "%s/kubelet-serving.pem" $paths.stateDir) "approval_timeout_seconds" $v.kubelet.tls.csr.approvalTimeoutSeconds -}}
{{- with $v.kubelet.tls.csr.expirationSeconds }}{{ $_ := set $csr "expiration_seconds" . }}{{ end -}}
{{- $_ := set $kubelet "csr" $csr -}}
{{- end -}}
{{- $config := dict "node" $node "kube" $kube "api" $api "kubelet" $kubelet "admin" (dict "host" "0.0.0.0" "port" $v.admin.port) -}}
{{- toYaml (merge $config (deepCopy $v.vkSettings)) -}}
{{- end -}}

{{/* The mode-1 API's configuration (slurmlink/api/config.py), from the values. */}}
{{- define "slurmlink-vk.apiConfig" -}}
{{- $paths := include "slurmlink-vk.paths" . | fromYaml -}}
{{- $m := .Values.mode1Api -}}
{{- $rest := dict "url" $m.proxy.url "api_version" $m.proxy.apiVersion -}}
{{- with $m.proxy.ca.existingConfigMap }}{{ $_ := set $rest "ca_file" $paths.proxyCA }}{{ end -}}
{{- with $m.serviceToken.existingSecret }}{{ $_ := set $rest "service_token_file" $paths.serviceToken }}{{ end -}}
{{- with $m.refreshIssuers }}{{ $_ := set $rest "refresh_issuers" . }}{{ end -}}
{{- $auth := dict -}}
{{- if .Values.api.token.existingSecret -}}
{{- $_ := set $auth "bearer_token_file" $paths.apiToken -}}
{{- else -}}
{{- /* 127.0.0.1 of the pod: only the pod's own containers (the vk) can reach it. */ -}}
{{- $_ := set $auth "allow_unauthenticated" true -}}
{{- end -}}
{{- $config := dict "listen" (dict "host" "127.0.0.1" "port" $m.port) "backend" "rest" "rest" $rest "job_root" $m.jobRoot "auth" $auth "admin" (dict "host" "0.0.0.0" "port" $m.adminPort) -}}
{{- with $m.site }}{{ $_ := set $config "site" . }}{{ end -}}
{{- toYaml (merge $config (deepCopy $m.settings)) -}}
{{- end -}}
