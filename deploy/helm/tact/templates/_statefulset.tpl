{{/* The StatefulSet of one tact job (the decision pipeline or the insights lane), each pod a member
of the job's consumer group with a state volume of its own. Called with a dict:
  root             the chart's root context
  name, containerName, labels, selector, component, podLabels, podAnnotations, replicas, args
  configMap, configMount, configChecksum, port, envPrefix ("TACT__" or "TACT_INSIGHTS__")
  staticMembership, env, extraEnv, persistence, resources, grace
  nodeSelector, affinity, tolerations, topologySpreadConstraints */}}
{{- define "tact.statefulSet" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $tls := and $v.kafka.tls.enabled $v.kafka.tls.existingSecret }}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .name }}
  labels:
    {{- .labels | nindent 4 }}
spec:
  serviceName: {{ .name }}
  replicas: {{ .replicas }}
  # Pods are independent consumer-group members: start and stop them together. A rolling update
  # still replaces one pod at a time and waits for it to be ready, i.e. done restoring.
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  {{- with .persistence.retentionPolicy }}
  persistentVolumeClaimRetentionPolicy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- .selector | nindent 6 }}
  template:
    metadata:
      annotations:
        checksum/config: {{ .configChecksum | sha256sum }}
        {{- with .podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- .selector | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- with .podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "tact.serviceAccountName" $root }}
      automountServiceAccountToken: false
      # Longer than [pipeline] shutdown_deadline_ms, so the drain on SIGTERM can finish.
      terminationGracePeriodSeconds: {{ .grace }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .containerName }}
          image: "{{ $v.image.repository }}:{{ $v.image.tag | default $root.Chart.AppVersion }}"
          imagePullPolicy: {{ $v.image.pullPolicy }}
          {{- with $v.image.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          args: {{ toJson .args }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          env:
            # Reachable from the kubelet and Prometheus, not only from localhost.
            - name: {{ .envPrefix }}HTTP__LISTEN
              value: "0.0.0.0:{{ .port }}"
            {{- if .staticMembership }}
            # Static membership: the pod name is stable across restarts, so a pod back within the
            # session timeout keeps its partitions (nothing moves, nothing is restored).
            - name: {{ .envPrefix }}KAFKA__INSTANCE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- end }}
            {{- if $v.kafka.sasl.enabled }}
            - name: {{ .envPrefix }}KAFKA__CLIENT__SASL_USERNAME
              valueFrom:
                secretKeyRef:
                  name: {{ $v.kafka.sasl.existingSecret }}
                  key: {{ $v.kafka.sasl.usernameKey }}
            - name: {{ .envPrefix }}KAFKA__CLIENT__SASL_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ $v.kafka.sasl.existingSecret }}
                  key: {{ $v.kafka.sasl.passwordKey }}
            {{- end }}
            {{- range $name, $value := .env }}
            - name: {{ $name }}
              value: {{ include "tact.envValue" $value }}
            {{- end }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          # Startup: the process is up (state store open, outbox resent). It never waits for
          # restores, which may take long: while partitions restore from the changelog the pod is
          # alive but not ready (/readyz says "restoring N partition(s)"), and is never restarted
          # for it.
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
          # Ready: joined the group and nothing restoring (also with no partitions at all).
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: {{ .configMount }}
              readOnly: true
            - name: state
              mountPath: {{ .persistence.mountPath }}
            - name: tmp
              mountPath: /tmp
            {{- if $tls }}
            - name: tls
              mountPath: /etc/tact/tls
              readOnly: true
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ .configMap }}
        - name: tmp
          emptyDir: {}
        {{- if $tls }}
        - name: tls
          secret:
            secretName: {{ $v.kafka.tls.existingSecret }}
        {{- end }}
      {{- with .nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  volumeClaimTemplates:
    - metadata:
        name: state
      spec:
        accessModes:
          {{- toYaml .persistence.accessModes | nindent 10 }}
        {{- with .persistence.storageClassName }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ .persistence.size }}
{{- end }}
