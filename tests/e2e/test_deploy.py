"""deploy/: the Helm chart lints and renders (defaults and a multi-instance example with the insights
lane and the PrometheusRule), every tact.toml it renders passes `tact validate`, every insights.toml
has only keys of the lane's defaults and passes the lane's own checks (`tact topics create
--insights-config --dry-run` loads it); the Prometheus rules pass promtool and their unit tests; the
systemd units verify; the dashboard and the rules reference only metrics tact registers; `tact topics
create --dry-run` plans the changelog compacted.

helm and promtool come from `scripts/install-deps.sh --test` (into ~/.cache/tact/bin, or $HELM_BIN,
$HELM3_BIN, $PROMTOOL_BIN, or PATH). Outside CI a missing tool skips the checks that need it; in CI
(CI=true, where install-deps.sh installs them) it fails them.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import REPO_ROOT, run_tact_cli

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

yaml = pytest.importorskip("yaml", reason="PyYAML is in tests/e2e/requirements.txt")

pytestmark = pytest.mark.timeout(120)

DEPLOY = REPO_ROOT / "deploy"
CHART = DEPLOY / "helm" / "tact"
RULES = DEPLOY / "prometheus" / "tact-rules.yaml"
RULES_TEST = DEPLOY / "prometheus" / "tact-rules.test.yaml"
SYSTEMD = DEPLOY / "systemd"
DASHBOARD = DEPLOY / "grafana" / "tact-dashboard.json"
CATALOG = REPO_ROOT / "crates" / "tact-telemetry" / "src" / "catalog.rs"
INSIGHTS_DEFAULTS = REPO_ROOT / "crates" / "tact-insights" / "src" / "default.toml"
TOOLS_DIR = Path(os.environ.get("TACT_TOOLS_DIR") or Path.home() / ".cache" / "tact" / "bin")
IN_CI = os.environ.get("CI", "").lower() == "true"

# The multi-instance example: more pods, the lane, the rules, a float, nested and listed policy tables.
MULTI_VALUES = {
    "replicaCount": 5,
    "insights": {
        "enabled": True,
        "config": {"insights": {"min_sessions": 10, "detour_min_confidence": 0.25, "faq_deep_scroll": 0.75}},
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "metrics": {"monitor": {"enabled": True}},
    "config": {
        "kafka": {"client": {"session.timeout.ms": 45000, "client.id": "tact"}},
        "state": {"block_cache_mb": 512},
        "pipeline": {"revoke_deadline_ms": 15000},
        "policy": {
            "holdout": {"share": 0.05, "salt": "deploy-test"},
            "recommendation": {"min_category_views": 4},
            "fatigue": {
                "backoff_factor": 1.5,
                "caps": [
                    {"kind": "recommendation", "max": 4, "per": "day"},
                    {"channel": "email", "max": 1, "per": "week"},
                ],
            },
            "quiet_hours": {"start": "22:00", "end": "07:00", "channels": ["email", "push"]},
            "sensitivity": {"categories": {"health": "never_remember", "baby": "session_only"}},
        },
    },
}

# Stale single-instance caveats that must not come back.
STALE = [
    "check that your tact version restores state",
    "restores state for moved partitions",
    "one instance per group",
    "before running more than one replica",
    "stop the service first",
    "group_instance_id",
]


# --------------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------------


def find_tool(env: str, name: str) -> Path | None:
    candidates = [os.environ.get(env), str(TOOLS_DIR / name), shutil.which(name)]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def need_tool(env: str, name: str) -> Path:
    path = find_tool(env, name)
    if path is None:
        msg = (f"{name} not found (${env}, {TOOLS_DIR / name} or PATH): "
               "run scripts/install-deps.sh --test")
        if IN_CI:
            pytest.fail(msg + " (CI installs it, so this is a broken install step)")
        pytest.skip(msg)
    return path


def run(argv: list, *, cwd: Path | None = None, timeout: float = 60, env: dict | None = None):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd) if cwd else None, env=env, stdin=subprocess.DEVNULL)


def show(res) -> str:
    return f"exit {res.returncode}\nstdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"


@pytest.fixture(scope="module")
def helm() -> Path:
    return need_tool("HELM_BIN", "helm")


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


class Rendered:
    """The objects of one `helm template`, and the config files of its ConfigMaps."""

    def __init__(self, text: str, workdir: Path):
        self.text = text
        self.docs = [d for d in yaml.safe_load_all(text) if d]
        self.files: dict[str, Path] = {}
        workdir.mkdir(parents=True, exist_ok=True)
        for cm in self.all("ConfigMap"):
            for key, body in (cm.get("data") or {}).items():
                path = workdir / f"{cm['metadata']['name']}--{key}"
                path.write_text(body)
                self.files[f"{cm['metadata']['name']}/{key}"] = path

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str) -> dict:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, got {[d['metadata']['name'] for d in self.all(kind)]}"
        return found[0]

    def configs(self, key: str) -> list[Path]:
        return [p for k, p in self.files.items() if k.endswith("/" + key)]


def helm_template(helm: Path, workdir: Path, values: dict | None = None, *extra: str) -> Rendered:
    argv = [helm, "template", "r", CHART, "--namespace", "deploy-test"]
    if values is not None:
        vf = workdir / "values.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        vf.write_text(yaml.safe_dump(values))
        argv += ["-f", vf]
    res = run(argv + list(extra))
    assert res.returncode == 0, f"helm template failed:\n{show(res)}"
    return Rendered(res.stdout, workdir / "rendered")


@pytest.fixture(scope="module")
def default_render(helm, tmp_path_factory) -> Rendered:
    return helm_template(helm, tmp_path_factory.mktemp("helm-default"))


@pytest.fixture(scope="module")
def multi_render(helm, tmp_path_factory) -> Rendered:
    # --set gives integers (int64), --set-json a float: both paths of the TOML renderer.
    return helm_template(helm, tmp_path_factory.mktemp("helm-multi"), MULTI_VALUES,
                         "--set", "insights.replicaCount=4",
                         "--set-json", 'insights.config.insights.detour_min_confidence=0.35')


def container(sts: dict) -> dict:
    [c] = sts["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def assert_static_membership(sts: dict, var: str) -> None:
    env = env_of(container(sts))
    assert var in env, f"{sts['metadata']['name']}: no {var} in {sorted(env)}"
    assert env[var].get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}, env[var]


def assert_probes(sts: dict) -> None:
    c = container(sts)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz", "a restore must never fail the startup probe"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def assert_pdb_for(rendered: Rendered, sts: dict, max_unavailable=1) -> None:
    selector = sts["spec"]["selector"]["matchLabels"]
    pdbs = [p for p in rendered.all("PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"] == selector]
    assert len(pdbs) == 1, f"one PodDisruptionBudget should select {selector}"
    assert pdbs[0]["spec"].get("maxUnavailable") == max_unavailable, pdbs[0]["spec"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------


def validate_pipeline_config(tact_bin: Path, path: Path, tmp_path: Path) -> dict:
    res = run_tact_cli(["validate", "--config", str(path)], tact_bin=tact_bin, cwd=tmp_path)
    assert res.returncode == 0, f"tact validate --config {path.name}:\n{path.read_text()}\n{show(res)}"
    with path.open("rb") as f:
        return tomllib.load(f)


def leaves(table: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out[key] = {}
            out.update(leaves(v, key + "."))
        else:
            out[key] = v
    return out


FREE_FORM = ("kafka.client.", "sensitivity.categories.")


def check_insights_keys(path: Path) -> dict:
    """Every key of a rendered insights.toml is one of the lane's defaults, with a compatible type."""
    with INSIGHTS_DEFAULTS.open("rb") as f:
        defaults = leaves(tomllib.load(f))
    with path.open("rb") as f:
        cfg = tomllib.load(f)
    for key, value in leaves(cfg).items():
        free = next((f for f in FREE_FORM if key.startswith(f)), None)
        if free:
            assert free.rstrip(".") in defaults
            assert isinstance(value, str), f"{key} = {value!r}: librdkafka settings and tiers are strings"
            continue
        assert key in defaults, f"{path.name}: {key} is not a key of the insights lane ({INSIGHTS_DEFAULTS})"
        want = defaults[key]
        if isinstance(want, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(want, bool) or isinstance(want, int):
            ok = type(value) is type(want)
        else:
            ok = isinstance(value, type(want))
        assert ok, f"{path.name}: {key} = {value!r} ({type(value).__name__}), the default is {want!r}"
    return cfg


def topics_dry_run(tact_bin: Path, *args: str) -> subprocess.CompletedProcess:
    """`tact topics create --dry-run` against a closed local port (nothing reachable)."""
    bootstrap = f"127.0.0.1:{closed_port()}"
    env = {"TACT__KAFKA__BOOTSTRAP_SERVERS": bootstrap, "TACT_INSIGHTS__KAFKA__BOOTSTRAP_SERVERS": bootstrap}
    return run_tact_cli(["topics", "create", *args, "--dry-run"], env=env, tact_bin=tact_bin, timeout=90)


def plan(stdout: str) -> dict[str, str]:
    """topic -> its line(s) of the dry-run plan (settings are on the following indented line)."""
    out: dict[str, str] = {}
    current = None
    for line in stdout.splitlines():
        m = re.match(r"^  (\S+)\s+\d+ partitions", line)
        if m:
            current = m.group(1)
            out[current] = line
        elif current and line.startswith("   "):
            out[current] += "\n" + line
    return out


@pytest.fixture(scope="module")
def dry_runs(tact_bin, multi_render):
    """Both dry runs at once (each waits ~10 s for the unreachable broker)."""
    [pipeline] = multi_render.configs("tact.toml")
    [lane] = multi_render.configs("insights.toml")
    with ThreadPoolExecutor(2) as pool:
        futures: dict[str, Future] = {
            "example": pool.submit(topics_dry_run, tact_bin, "--config", str(DEPLOY / "tact.example.toml")),
            "chart": pool.submit(topics_dry_run, tact_bin, "--config", str(pipeline),
                                 "--insights-config", str(lane), "--partitions", "12"),
        }
        yield {k: f.result() for k, f in futures.items()}


# --------------------------------------------------------------------------------------------
# the metric catalog
# --------------------------------------------------------------------------------------------


def metric_catalog() -> set[str]:
    """Every series name tact exports, from the registrations in crates/tact-telemetry/src/catalog.rs:
    tact_[insights_]<name>[_<unit>], counters + _total, histograms + _bucket/_sum/_count, info + _info."""
    src = CATALOG.read_text()
    src = src.split("#[cfg(test)]")[0]

    def fields(struct: str) -> dict[str, str]:
        body = re.search(r"pub struct " + struct + r"\s*\{(.*?)\n\}", src, re.S).group(1)
        out = {}
        for name, ty in re.findall(r"pub (\w+):\s*([^\n]+),", body):
            kind = next((k for k in ("Counter", "Histogram", "Gauge", "Info") if re.search(rf"\b{k}\b", ty)), "Other")
            out[name] = kind
        return out

    blocks = {
        "EdgeMetrics": (["tact_", "tact_insights_"], fields("EdgeMetrics")),
        "Metrics": (["tact_"], fields("Metrics")),
        "InsightsMetrics": (["tact_insights_"], fields("InsightsMetrics")),
    }
    names: set[str] = set()
    parts = re.split(r"\nimpl (\w+) \{", src)
    call = re.compile(
        r"\.register(?:_with_unit)?\(\s*\"(\w+)\",\s*\"[^\"]*\",\s*"
        r"(?:Unit::(?:Other\(\"(\w+)\"\.into\(\)\)|(\w+)),\s*)?"
        r"(?:m\.(\w+)\.clone\(\)|(Info)::new)")
    for impl, body in zip(parts[1::2], parts[2::2]):
        if impl not in blocks:
            continue
        prefixes, kinds = blocks[impl]
        for name, other_unit, unit, fld, info in call.findall(body):
            unit = (other_unit or unit or "").lower()
            kind = "Info" if info else kinds.get(fld, "Other")
            for prefix in prefixes:
                base = prefix + name + (f"_{unit}" if unit else "")
                if kind == "Counter":
                    names.add(base + "_total")
                elif kind == "Histogram":
                    names.update({base, base + "_bucket", base + "_sum", base + "_count"})
                elif kind == "Info":
                    names.add(base + "_info")
                else:
                    names.add(base)
    for known in ["tact_events_consumed_total", "tact_rebalances_total", "tact_restore_bytes_total",
                  "tact_restore_remaining_records", "tact_restore_duration_seconds_bucket",
                  "tact_partitions_restoring", "tact_insights_partitions_restoring",
                  "tact_consumer_lag_messages", "tact_build_info", "tact_decisions_total"]:
        assert known in names, f"the catalog parser of this test missed {known}; update metric_catalog()"
    return names


METRIC_REF = re.compile(r"\btact_[a-z0-9_]*[a-z0-9]\b(?!:)")


# --------------------------------------------------------------------------------------------
# helm
# --------------------------------------------------------------------------------------------


def test_chart_lints(helm, tmp_path):
    vf = tmp_path / "multi.yaml"
    vf.write_text(yaml.safe_dump(MULTI_VALUES))
    for extra in ([], ["-f", vf]):
        res = run([helm, "lint", "--strict", CHART, *extra])
        assert res.returncode == 0, show(res)


def test_default_render_is_a_three_pod_group_with_a_pdb(default_render, tact_bin, tmp_path):
    r = default_render
    [sts] = r.all("StatefulSet")
    assert sts["metadata"]["name"] == "r-tact"
    assert sts["spec"]["replicas"] == 3
    assert_static_membership(sts, "TACT__KAFKA__INSTANCE_ID")
    assert env_of(container(sts))["TACT__HTTP__LISTEN"]["value"] == "0.0.0.0:9898"
    assert container(sts)["args"] == ["run", "--config", "/etc/tact/config/tact.toml"]
    assert_probes(sts)
    assert_pdb_for(r, sts)
    assert not r.all("PrometheusRule") and not r.all("ServiceMonitor")

    [path] = r.configs("tact.toml")
    cfg = validate_pipeline_config(tact_bin, path, tmp_path)
    assert "recommendation_min_category_views" not in cfg["policy"], "moved to [policy.recommendation]"
    assert cfg["policy"]["recommendation"]["min_category_views"] == 3
    assert cfg["topics"]["changelog"] == "tact-changelog"
    assert cfg["pipeline"]["revoke_deadline_ms"] == 10000
    assert cfg["state"]["dir"] == "/var/lib/tact/state"
    assert "instance_id" not in cfg["kafka"], "the pod name comes from the environment"
    assert "listen" not in cfg.get("http", {})


def test_multi_instance_render(multi_render, tact_bin, tmp_path):
    r = multi_render
    pipeline = r.one("StatefulSet", "r-tact")
    lane = r.one("StatefulSet", "r-tact-insights")
    assert pipeline["spec"]["replicas"] == 5
    assert lane["spec"]["replicas"] == 4
    assert_static_membership(pipeline, "TACT__KAFKA__INSTANCE_ID")
    assert_static_membership(lane, "TACT_INSIGHTS__KAFKA__INSTANCE_ID")
    assert "TACT__KAFKA__INSTANCE_ID" not in env_of(container(lane))
    assert_probes(pipeline)
    assert_probes(lane)
    assert_pdb_for(r, pipeline)
    assert_pdb_for(r, lane)

    c = container(lane)
    assert c["args"] == ["insights", "run", "--config", "/etc/tact/insights/insights.toml"]
    assert env_of(c)["TACT_INSIGHTS__HTTP__LISTEN"]["value"] == "0.0.0.0:9897"
    assert c["ports"] == [{"name": "http", "containerPort": 9897, "protocol": "TCP"}]
    [claim] = lane["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert {"name": "state", "mountPath": "/var/lib/tact-insights"} in c["volumeMounts"]
    assert lane["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "r-tact-insights"
    assert r.one("Service", "r-tact-insights")["spec"]["ports"][0]["port"] == 9897

    # Neither job's selector (StatefulSet, Service, PDB, monitor) takes the other's pods.
    pipeline_pods = pipeline["spec"]["template"]["metadata"]["labels"]
    lane_pods = lane["spec"]["template"]["metadata"]["labels"]
    assert selects(pipeline["spec"]["selector"]["matchLabels"], pipeline_pods)
    assert not selects(pipeline["spec"]["selector"]["matchLabels"], lane_pods)
    assert not selects(lane["spec"]["selector"]["matchLabels"], pipeline_pods)
    assert not selects(r.one("Service", "r-tact")["spec"]["selector"], lane_pods)
    assert {m["metadata"]["name"] for m in r.all("ServiceMonitor")} == {"r-tact", "r-tact-insights"}

    # The PrometheusRule carries the rules file, unchanged.
    rule = r.one("PrometheusRule", "r-tact")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]

    # tact.toml: valid, with the float a float and the nested and listed policy tables in place.
    [path] = r.configs("tact.toml")
    cfg = validate_pipeline_config(tact_bin, path, tmp_path)
    policy = cfg["policy"]
    assert policy["holdout"]["share"] == 0.05 and isinstance(policy["holdout"]["share"], float)
    assert policy["fatigue"]["backoff_factor"] == 1.5
    assert policy["fatigue"]["caps"] == MULTI_VALUES["config"]["policy"]["fatigue"]["caps"]
    assert policy["recommendation"]["min_category_views"] == 4
    assert isinstance(policy["recommendation"]["min_category_views"], int)
    assert cfg["kafka"]["client"] == {"client.id": "tact", "session.timeout.ms": "45000"}
    assert cfg["pipeline"]["revoke_deadline_ms"] == 15000
    assert cfg["state"] == {"block_cache_mb": 512, "dir": "/var/lib/tact/state"}

    # insights.toml: the lane's keys only; floats stay floats; pipeline settings inherited.
    [lane_path] = r.configs("insights.toml")
    lane_cfg = check_insights_keys(lane_path)
    ins = lane_cfg["insights"]
    assert ins["detour_min_confidence"] == 0.35 and isinstance(ins["detour_min_confidence"], float)
    assert ins["faq_deep_scroll"] == 0.75 and ins["min_sessions"] == 10
    assert lane_cfg["kafka"]["bootstrap_servers"] == cfg["kafka"]["bootstrap_servers"]
    assert lane_cfg["kafka"]["group_id"] == "tact-insights" != cfg["kafka"]["group_id"]
    assert lane_cfg["kafka"]["client"] == cfg["kafka"]["client"]
    assert lane_cfg["topics"]["clickstream"] == cfg["topics"]["clickstream"]
    assert lane_cfg["topics"]["changelog"] == "tact-insights-changelog"
    assert lane_cfg["sensitivity"]["categories"] == {"health": "never_remember", "baby": "session_only"}
    assert lane_cfg["state"]["dir"] == "/var/lib/tact-insights/state"


def test_chart_dry_run_plans_both_changelogs_compacted(dry_runs):
    """`tact topics create` loads both rendered configs (the lane's with all its checks)."""
    res = dry_runs["chart"]
    assert res.returncode == 0, show(res)
    topics = plan(res.stdout)
    for changelog in ("tact-changelog", "tact-insights-changelog"):
        assert changelog in topics, f"no {changelog} in the plan:\n{res.stdout}"
        assert "cleanup.policy=compact" in topics[changelog]
        assert " 12 partitions" in topics[changelog]
    assert "tact-insights-partials" in topics


def test_example_dry_run_plans_the_changelog_compacted(dry_runs):
    res = dry_runs["example"]
    assert res.returncode == 0, show(res)
    topics = plan(res.stdout)
    assert "tact-changelog" in topics, res.stdout
    assert "cleanup.policy=compact" in topics["tact-changelog"]
    assert re.search(r"\b6 partitions", topics["tact-changelog"])
    assert topics["clickstream"].split()[1] == topics["tact-changelog"].split()[1], "partitioned alike"


def test_chart_switches(helm, tmp_path):
    off = helm_template(helm, tmp_path / "off", None, "--set", "replicaCount=1", "--set", "staticMembership=false",
                        "--set", "podDisruptionBudget.enabled=false")
    [sts] = off.all("StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert "TACT__KAFKA__INSTANCE_ID" not in env_of(container(sts))
    assert not off.all("PodDisruptionBudget")

    min_avail = helm_template(helm, tmp_path / "min", None, "--set", "podDisruptionBudget.minAvailable=2")
    [pdb] = min_avail.all("PodDisruptionBudget")
    assert pdb["spec"].get("minAvailable") == 2 and "maxUnavailable" not in pdb["spec"]

    sasl = helm_template(helm, tmp_path / "sasl", {"insights": {"enabled": True},
                                                   "kafka": {"sasl": {"enabled": True, "existingSecret": "kafka"}}})
    for name, prefix in (("r-tact", "TACT__"), ("r-tact-insights", "TACT_INSIGHTS__")):
        env = env_of(container(sasl.one("StatefulSet", name)))
        for var in ("SASL_USERNAME", "SASL_PASSWORD"):
            assert env[f"{prefix}KAFKA__CLIENT__{var}"]["valueFrom"]["secretKeyRef"]["name"] == "kafka"
    for path in sasl.configs("tact.toml") + sasl.configs("insights.toml"):
        text = path.read_text()
        assert '"security.protocol" = "SASL_SSL"' in text and "password" not in text

    for bad, why in ((["--set", "config.kafka.instance_id=x"], "instance_id"),
                     (["--set", "terminationGracePeriodSeconds=5"], "terminationGracePeriodSeconds"),
                     (["--set", "insights.enabled=true", "--set", "insights.terminationGracePeriodSeconds=5"],
                      "insights.terminationGracePeriodSeconds")):
        res = run([helm, "template", "r", CHART, *bad])
        assert res.returncode != 0 and why in res.stderr, show(res)


def test_helm3_renders_the_same(helm, tmp_path):
    helm3 = find_tool("HELM3_BIN", "helm3")
    if helm3 is None:
        if IN_CI:
            pytest.fail("helm3 not found: scripts/install-deps.sh --test installs it")
        pytest.skip("helm3 not found (scripts/install-deps.sh --test installs it as ~/.cache/tact/bin/helm3)")
    vf = tmp_path / "multi.yaml"
    vf.write_text(yaml.safe_dump(MULTI_VALUES))
    res = run([helm3, "lint", "--strict", CHART, "-f", vf])
    assert res.returncode == 0, show(res)
    outputs = [run([h, "template", "r", CHART, "-f", vf]) for h in (helm, helm3)]
    assert all(o.returncode == 0 for o in outputs), [show(o) for o in outputs]
    assert outputs[0].stdout == outputs[1].stdout, "helm 3 and helm 4 render the chart differently"


def test_deploy_files_have_no_single_instance_caveats():
    texts = {p: p.read_text() for p in [*CHART.rglob("*"), *SYSTEMD.iterdir(), DEPLOY / "README.md"] if p.is_file()}
    for path, text in texts.items():
        for stale in STALE:
            assert stale not in text.lower(), f"{path}: stale caveat {stale!r}"


def test_notes(helm, tmp_path):
    vf = tmp_path / "multi.yaml"
    vf.write_text(yaml.safe_dump(MULTI_VALUES))
    res = run([helm, "install", "r", CHART, "--dry-run=client", "-f", vf, "--namespace", "deploy-test"])
    if res.returncode != 0 and "cluster unreachable" in res.stderr:
        pytest.skip(f"{helm} cannot render NOTES.txt without a cluster (helm 4 can)")
    assert res.returncode == 0, show(res)
    notes = res.stdout.split("NOTES:", 1)[1]
    assert "r-tact (5 pod(s))" in notes and "static membership" in notes
    assert "r-tact-insights (3 pod(s))" in notes
    assert "tact topics create --config tact.toml --insights-config insights.toml" in notes


# --------------------------------------------------------------------------------------------
# Prometheus rules and the dashboard
# --------------------------------------------------------------------------------------------


NEW_ALERTS = {"TactPartitionRestoreSlow", "TactInsightsPartitionRestoreSlow", "TactRebalancesFrequent",
              "TactPartitionsLost", "TactInstanceIdle"}


def test_rules_are_the_charts_and_reference_real_metrics():
    assert (CHART / "files" / "tact-rules.yaml").read_text() == RULES.read_text(), \
        "copy deploy/prometheus/tact-rules.yaml to deploy/helm/tact/files/tact-rules.yaml"
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert NEW_ALERTS <= alerts
    tested = {}
    for t in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for a in t.get("alert_rule_test", []):
            tested.setdefault(a["alertname"], 0)
            tested[a["alertname"]] += len(a.get("exp_alerts") or [])
    for alert in NEW_ALERTS:
        assert tested.get(alert, 0) > 0, f"{alert} has no rule test that expects it to fire"
    known = metric_catalog()
    unknown = sorted(set(METRIC_REF.findall(RULES.read_text())) - known)
    assert not unknown, f"tact-rules.yaml references metrics tact does not export: {unknown}"


def test_promtool_checks_and_tests_the_rules():
    promtool = need_tool("PROMTOOL_BIN", "promtool")
    res = run([promtool, "check", "rules", RULES.name], cwd=RULES.parent)
    assert res.returncode == 0, show(res)
    res = run([promtool, "test", "rules", RULES_TEST.name], cwd=RULES.parent)
    assert res.returncode == 0, show(res)


def test_dashboard_references_real_metrics():
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)]
    used = {m for e in exprs for m in METRIC_REF.findall(e)}
    unknown = sorted(used - metric_catalog())
    assert not unknown, f"the dashboard references metrics tact does not export: {unknown}"
    for needed in ("tact_partitions_assigned", "tact_partitions_restoring", "tact_rebalances_total",
                   "tact_restore_records_total", "tact_restore_remaining_records",
                   "tact_callback_answer_seconds_bucket", "tact_callback_breaches_total"):
        assert needed in used, f"no panel shows {needed}"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine


# --------------------------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------------------------


UNITS = ["tact.service", "tact@.service", "tact-insights.service"]


def unit_settings(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def test_units_statically():
    for unit in UNITS:
        settings = unit_settings(SYSTEMD / unit)
        assert ("RestartPreventExitStatus", "2") in settings, f"{unit}: a bad config (exit 2) must not be retried"
        assert ("Restart", "on-failure") in settings, unit
    tmpl = dict(unit_settings(SYSTEMD / "tact@.service"))
    tmpl_all = unit_settings(SYSTEMD / "tact@.service")
    assert tmpl["StateDirectory"] == "tact/%i"
    assert ("Environment", "TACT__STATE__DIR=/var/lib/tact/%i/state") in tmpl_all
    assert ("Environment", "TACT__KAFKA__INSTANCE_ID=%H-%i") in tmpl_all
    assert ("EnvironmentFile", "/etc/tact/%i.env") in tmpl_all
    example = (SYSTEMD / "tact-instance.env.example").read_text()
    assert "TACT__HTTP__LISTEN=" in example and "TACT__HTTP__ADMIN_LISTEN=" in example
    lane = unit_settings(SYSTEMD / "tact-insights.service")
    assert any(k == "ExecStart" and " insights run --config " in v for k, v in lane)
    assert any(k == "Environment" and v.startswith("TACT_INSIGHTS__KAFKA__INSTANCE_ID=") for k, v in lane)
    text = (SYSTEMD / "tact.service").read_text()
    assert "tact inspect --state-dir" in text and "tact inspect --config" in text


def test_units_verify(tact_bin, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the static checks ran)")
    # The units name /usr/local/bin/tact; verify checks that ExecStart is executable.
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text().replace("/usr/local/bin/tact", str(tact_bin))
        (tmp_path / unit).write_text(text)
    # First prove verify works here: it must flag a broken unit.
    (tmp_path / "broken.service").write_text("[Service]\nType=simplex\nExecStart=/bin/true\nBogusKey=1\n")
    probe = run([analyze, "verify", tmp_path / "broken.service"], cwd=tmp_path)
    if "broken.service" not in probe.stderr:
        pytest.skip(f"systemd-analyze verify does not work in this environment:\n{show(probe)}")
    res = run([analyze, "verify", *(tmp_path / u for u in ("tact.service", "tact-insights.service", "tact@a.service"))],
              cwd=tmp_path)
    ours = [line for line in res.stderr.splitlines() if re.search(r"tact(@a|@|-insights)?\.service", line)]
    assert res.returncode == 0 and not ours, show(res)
