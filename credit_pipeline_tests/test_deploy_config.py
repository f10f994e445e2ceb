"""The shipped deployment configuration, checked with the tools that will read it.

* Every shipped Dagster instance file (the repository's ``dagster.yaml`` and ``deploy/dagster-instance.yaml``,
  the instance ``deploy/values.yaml`` makes the chart render) goes through Dagster's own loader,
  ``dagster._core.instance.config.dagster_instance_config`` (the cross-key rules and the instance schema), and
  each configurable class in it (storage, run launcher, run coordinator, ...) through its own
  ``config_type()`` with ``dagster._config.validate_config``, which is what Dagster does when it builds the
  instance. The K8sRunLauncher block is checked against dagster-k8s's schema. Broken variants are refused.
* ``deploy/values.yaml`` is checked against the keys of the official chart's values that it uses. No package
  on PyPI or npm ships the chart's ``values.schema.json`` (the chart is published only as a Helm repository),
  so the models below restate, for those keys only, the types of the chart's published schema
  (``helm/dagster/values.schema.json`` and ``helm/dagster/charts/dagster-user-deployments/values.schema.json``
  in dagster-io/dagster, generated from ``helm/dagster/schema/schema/charts/*``), forbidding unknown keys, so
  a misspelt key fails here as it would under ``helm install``. (The schema was read from the chart's source
  as stored for this work, not from the 1.13.27 release archive, which could not be fetched here; a key the
  1.13.27 chart renamed would pass here and fail in Helm.) The Kubernetes objects inside the values
  (env, volumes, mounts, resources) and ``deploy/ledger-migrate-job.yaml`` are checked against the Kubernetes
  API models of the ``kubernetes`` client, strictly, by dagster-k8s's own parser.
* The values say what the project needs: one code location serving ``credit_pipeline.defs.definitions:defs``,
  the read-only webserver, one daemon, the K8sRunLauncher, external PostgreSQL, secrets under the variable
  names the code reads; the Dockerfile installs the project without dev extras on python:3.11-slim.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import dagster
from dagster._config import validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData, class_from_code_pointer

try:  # pinned in the dev extras with dagster: "dagster-k8s==0.29.27"
    import dagster_k8s
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
    from kubernetes.client import V1EnvVar, V1Job, V1ResourceRequirements, V1Volume, V1VolumeMount
except ImportError as exc:  # pragma: no cover - says what to install instead of a bare ImportError
    raise ImportError("these tests need dagster-k8s matching dagster: pip install 'dagster-k8s==0.29.27'") from exc

from credit_pipeline.cli import build_parser
from credit_pipeline.defs.statements import FINALIZE_POOL

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VALUES = DEPLOY / "values.yaml"
CHART_INSTANCE = DEPLOY / "dagster-instance.yaml"
DOCS = ROOT / "docs" / "deploy.md"
RELEASE, NAMESPACE = "credit-pipeline", "credit-pipeline"  # the names docs/deploy.md installs with

# The instance keys whose value is a configurable class ({module, class, config}).
CLASS_KEYS = ("run_storage", "event_log_storage", "schedule_storage", "compute_logs", "local_artifact_storage",
              "run_launcher", "run_coordinator", "scheduler")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def instance_files() -> list[Path]:
    """Every dagster.yaml variant the repository ships."""
    return [ROOT / "dagster.yaml", *sorted(p for p in DEPLOY.rglob("*.yaml") if "dagster" in p.name and p.name != "values.yaml")]


# -- Dagster's own validation ---------------------------------------------------------------------


def validate_instance(directory: Path, filename: str) -> dict[str, Any]:
    """Load an instance file the way DagsterInstance does, then validate every configurable class's config
    against that class's own schema; raise DagsterInvalidConfigError naming the key on any problem."""
    config, _ = dagster_instance_config(str(directory), filename)
    entries = [(key, config[key]) for key in CLASS_KEYS if config.get(key)]
    if "custom" in (config.get("storage") or {}):
        entries.append(("storage.custom", config["storage"]["custom"]))
    for key, entry in entries:
        # ConfigurableClassData maps the public dagster.core.* paths to dagster._core.*, as the instance does
        data = ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump(entry.get("config") or {}))
        cls = class_from_code_pointer(data.module_name, data.class_name)
        result = validate_config(cls.config_type(), entry.get("config") or {})
        if not result.success:
            raise DagsterInvalidConfigError(f"{filename}: {key} ({entry['class']}) has invalid config", result.errors,
                                            entry.get("config"))
    return dict(config)


def validate_instance_dict(config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return validate_instance(tmp_path, "dagster.yaml")


def test_every_shipped_dagster_yaml_is_found():
    names = {str(p.relative_to(ROOT)) for p in instance_files()}
    assert {"dagster.yaml", "deploy/dagster-instance.yaml"} <= names


@pytest.mark.parametrize("path", instance_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_instance_passes_dagsters_validation(path: Path):
    config = validate_instance(path.parent, path.name)
    # Both run the queue with one finalize at a time and four runs at once, telemetry off.
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"] == {"runs": {"max_concurrent_runs": 4}, "pools": {"default_limit": 1}}
    assert config["telemetry"] == {"enabled": False}


def test_chart_instance_uses_k8s_run_launcher_and_psycopg2_postgres():
    config = validate_instance(CHART_INSTANCE.parent, CHART_INSTANCE.name)
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert class_from_code_pointer(launcher["module"], launcher["class"]) is K8sRunLauncher
    result = validate_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        db = config[key]["config"]["postgres_db"]
        assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1's postgresql:// is psycopg 3
        assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}  # from the Secret, never in the file


def _root_with(**extra: Any) -> dict[str, Any]:
    return {**load_yaml(ROOT / "dagster.yaml"), **extra}


def _chart_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(load_yaml(CHART_INSTANCE))
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


BROKEN_INSTANCES = {  # name: (the variant, what Dagster's refusal says)
    # `storage` cannot be combined with the per-store keys
    "storage-and-run_storage": (lambda: _root_with(run_storage=load_yaml(CHART_INSTANCE)["run_storage"]),
                                "incompatible with `run_storage`"),
    # the chart's own queuedRunCoordinator.maxConcurrentRuns beside concurrency pools: why the values turn
    # the chart's run_coordinator block off and set it through additionalInstanceConfig
    "run-coordinator-limit-with-pools": (lambda: _chart_with(("run_coordinator", "config"), {"max_concurrent_runs": 4}),
                                         "incompatible with the `concurrency > runs` config"),
    "misspelt-top-level-key": (lambda: {**load_yaml(CHART_INSTANCE), "run_launchr": load_yaml(CHART_INSTANCE)["run_launcher"]},
                               "instance config"),
    "k8s-launcher-unknown-key": (lambda: _chart_with(("run_launcher", "config", "job_namespce"), "credit-pipeline"),
                                 r"run_launcher \(K8sRunLauncher\)"),
    "k8s-launcher-wrong-type": (lambda: _chart_with(("run_launcher", "config", "load_incluster_config"), "yes"),
                                r"run_launcher \(K8sRunLauncher\)"),
    "postgres-password-as-bad-source": (lambda: _chart_with(("run_storage", "config", "postgres_db", "password"), {"envv": "X"}),
                                        r"run_storage \(PostgresRunStorage\)"),
    "pool-limit-out-of-range": (lambda: _chart_with(("concurrency", "pools", "default_limit"), -1), "default_limit"),
    "storage-class-unknown-option": (lambda: _root_with(storage={"custom": {**load_yaml(ROOT / "dagster.yaml")["storage"]["custom"],
                                                                            "config": {"postgres_uri": "postgresql://x"}}}),
                                     r"storage.custom \(CreditPipelineStorage\)"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_INSTANCES))
def test_broken_instance_variant_is_refused(name: str, tmp_path: Path):
    variant, reason = BROKEN_INSTANCES[name]
    with pytest.raises(DagsterInvalidConfigError, match=reason):
        validate_instance_dict(variant(), tmp_path)


# -- what the chart renders from the values --------------------------------------------------------


def _pg_config(values: dict[str, Any]) -> dict[str, Any]:
    pg = values["postgresql"]
    db = {"username": pg["postgresqlUsername"], "password": {"env": "DAGSTER_PG_PASSWORD"}, "hostname": pg["postgresqlHost"],
          "db_name": pg["postgresqlDatabase"], "port": pg["service"]["port"], "params": pg.get("postgresqlParams") or {}}
    if pg.get("postgresqlScheme"):
        db["scheme"] = pg["postgresqlScheme"]
    return {"postgres_db": db}


def chart_instance(values: dict[str, Any], release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The instance the chart's templates (configmap-instance.yaml, helpers/instance/*.tpl) render, for the
    settings deploy/values.yaml uses: an executable reading of those templates, not a Helm substitute."""
    fullname = release if "dagster" in release else f"{release}-dagster"
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher: dict[str, Any] = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or namespace,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": (values.get("global") or {}).get("serviceAccountName") or fullname,
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{fullname}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    for source, target in (("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")):
        if k8s.get(source):
            launcher[target] = [item["name"] for item in k8s[source]]
    for source, target in (("envVars", "env_vars"), ("volumeMounts", "volume_mounts"), ("volumes", "volumes"),
                           ("labels", "labels"), ("resources", "resources")):
        if k8s.get(source):
            launcher[target] = k8s[source]
    if k8s.get("failPodOnRunFailure"):
        launcher["fail_pod_on_run_failure"] = True
    assert values["scheduler"]["type"] == "DagsterDaemonScheduler" and values["computeLogManager"]["type"] == "NoOpComputeLogManager"
    daemon = values["dagsterDaemon"]
    instance: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {"module": "dagster_postgres.schedule_storage", "class": "PostgresScheduleStorage", "config": _pg_config(values)},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": _pg_config(values)},
        "event_log_storage": {"module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage", "config": _pg_config(values)},
        "compute_logs": {"module": "dagster.core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    assert not daemon["runCoordinator"]["enabled"], "the chart's run_coordinator block conflicts with concurrency pools"
    monitoring = daemon.get("runMonitoring") or {}
    if daemon["enabled"] and monitoring.get("enabled"):
        instance["run_monitoring"] = {"enabled": True, "start_timeout_seconds": monitoring["startTimeoutSeconds"],
                                      "poll_interval_seconds": monitoring["pollIntervalSeconds"]}
    for kind in ("sensors", "schedules"):
        assert not daemon[kind]["useThreads"]  # rendered only when true
    instance.update(values.get("additionalInstanceConfig") or {})
    return instance


def test_shipped_chart_instance_is_what_the_values_render():
    assert load_yaml(CHART_INSTANCE) == chart_instance(load_yaml(VALUES))


def test_instance_rendered_from_values_passes_dagsters_validation(tmp_path: Path):
    validate_instance_dict(chart_instance(load_yaml(VALUES)), tmp_path)


def test_values_with_the_charts_run_coordinator_limit_would_render_a_refused_instance(tmp_path: Path):
    values = load_yaml(VALUES)
    instance = chart_instance(values)
    # what dagsterDaemon.runCoordinator.enabled: true with maxConcurrentRuns: 4 adds to it
    instance["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
                                   "config": {"max_concurrent_runs": 4}}
    with pytest.raises(DagsterInvalidConfigError, match="max_concurrent_runs"):
        validate_instance_dict(instance, tmp_path)


# -- the Helm values against the chart's published values schema (the keys used) --------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class Image(Strict):
    repository: str
    tag: str | int | None = None
    pullPolicy: PullPolicy


class SecretRef(Strict):
    name: str
    optional: bool | None = None


class Service(Strict):
    type: str
    port: int
    annotations: dict[str, str] | None = None


class Global(Strict):
    postgresqlSecretName: str
    dagsterHome: str
    serviceAccountName: str | None = None
    celeryConfigSecretName: str | None = None


class PostgreSQLService(Strict):
    port: int


class PostgreSQL(Strict):
    enabled: bool
    postgresqlHost: str
    postgresqlUsername: str
    postgresqlPassword: str
    postgresqlDatabase: str
    postgresqlParams: dict[str, Any]
    postgresqlScheme: str | None = None
    service: PostgreSQLService


class Webserver(Strict):
    replicaCount: int
    image: Image
    nameOverride: str
    enableReadOnly: bool
    service: Service
    env: dict[str, str] | list[dict[str, Any]]
    envSecrets: list[SecretRef]


class RunCoordinator(Strict):
    enabled: bool


class RunMonitoring(Strict):  # `runMonitoring` is a free-form object in the chart schema; these are the keys its template reads
    enabled: bool
    startTimeoutSeconds: int
    pollIntervalSeconds: int


class Threads(Strict):
    useThreads: bool
    numWorkers: int | None = None


class Daemon(Strict):
    enabled: bool
    image: Image
    runCoordinator: RunCoordinator
    runMonitoring: RunMonitoring
    sensors: Threads
    schedules: Threads


class IncludeConfig(Strict):
    enabled: bool


class UserDeployment(Strict):
    name: str
    image: Image
    dagsterApiGrpcArgs: list[str]
    port: int
    includeConfigInLaunchedRuns: IncludeConfig
    env: dict[str, str] | list[dict[str, Any]]
    envSecrets: list[SecretRef]
    volumes: list[dict[str, Any]]
    volumeMounts: list[dict[str, Any]]
    resources: dict[str, Any]


class UserDeployments(Strict):
    enabled: bool
    enableSubchart: bool
    deployments: list[UserDeployment] = Field(min_length=1)


class K8sRunLauncherValues(Strict):
    jobNamespace: str | None
    loadInclusterConfig: bool
    imagePullPolicy: PullPolicy
    envConfigMaps: list[SecretRef]
    envSecrets: list[SecretRef]
    envVars: list[str]
    volumeMounts: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    labels: dict[str, str] | None = None
    failPodOnRunFailure: bool | None = None
    resources: dict[str, Any] | None = None


class RunLauncherConfig(Strict):
    k8sRunLauncher: K8sRunLauncherValues


class RunLauncher(Strict):
    type: Literal["CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"]
    config: RunLauncherConfig


class TypeOnly(Strict):
    type: str


class Enabled(Strict):
    enabled: bool


class HelmValues(Strict):
    global_: Global = Field(alias="global")
    generatePostgresqlPasswordSecret: bool
    postgresql: PostgreSQL
    dagsterWebserver: Webserver
    dagsterDaemon: Daemon
    user_deployments: UserDeployments = Field(alias="dagster-user-deployments")
    runLauncher: RunLauncher
    scheduler: TypeOnly
    computeLogManager: TypeOnly
    telemetry: Enabled
    migrate: Enabled
    additionalInstanceConfig: dict[str, Any]


def test_values_match_the_charts_schema_for_the_keys_they_use():
    HelmValues.model_validate(load_yaml(VALUES))


def _values_with(path: tuple[str | int, ...], value: Any, delete: bool = False) -> dict[str, Any]:
    values = copy.deepcopy(load_yaml(VALUES))
    node: Any = values
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return values


@pytest.mark.parametrize("path,value,delete", [
    (("dagsterWebserver", "enableReadonly"), True, False),  # misspelt key
    (("dagster-user-deployments", "deployments", 0, "port"), None, True),  # required
    (("runLauncher", "type"), "K8sRunLaunchr", False),
    (("dagsterDaemon", "image", "pullPolicy"), "Sometimes", False),
    (("postgresql", "service", "port"), "five", False),
], ids=["misspelt-key", "missing-port", "unknown-launcher", "bad-pull-policy", "port-not-int"])
def test_broken_values_are_refused(path, value, delete):
    with pytest.raises(ValidationError):
        HelmValues.model_validate(_values_with(path, value, delete))


def _k8s(model, data: dict[str, Any]):
    return k8s_model_from_dict(model, k8s_snake_case_dict(model, data))


def test_kubernetes_objects_in_the_values_are_valid_kubernetes():
    values = load_yaml(VALUES)
    for deployment in values["dagster-user-deployments"]["deployments"]:
        for env in deployment["env"]:
            _k8s(V1EnvVar, env)
        for volume in deployment["volumes"]:
            _k8s(V1Volume, volume)
        for mount in deployment["volumeMounts"]:
            _k8s(V1VolumeMount, mount)
        _k8s(V1ResourceRequirements, deployment["resources"])
    _k8s(V1ResourceRequirements, values["runLauncher"]["config"]["k8sRunLauncher"]["resources"])
    with pytest.raises(Exception, match="Unexpected keys"):
        _k8s(V1VolumeMount, {"name": "policy", "mountpath": "/etc/credit_pipeline"})


def test_ledger_migrate_job_is_a_valid_kubernetes_job_running_db_upgrade_as_the_owner():
    job = load_yaml(DEPLOY / "ledger-migrate-job.yaml")
    _k8s(V1Job, job)
    container, = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["credit-pipeline", "db", "upgrade"]
    build_parser().parse_args(container["command"][1:])
    env, = container["env"]
    assert env["name"] == "CREDIT_PIPELINE_DATABASE_URL"
    assert env["valueFrom"]["secretKeyRef"]["name"] == "credit-pipeline-ledger-owner"
    deployment = load_yaml(VALUES)["dagster-user-deployments"]["deployments"][0]
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"


# -- what the values and the image must say for this project ---------------------------------------


def code_env_names() -> set[str]:
    """Every environment variable name the package's code spells out."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "credit_pipeline").rglob("*.py"))
    return set(re.findall(r"[\"']([A-Z][A-Z0-9_]{3,})[\"']", text))


def test_values_describe_the_deployment_the_project_needs():
    values = load_yaml(VALUES)
    deployment, = values["dagster-user-deployments"]["deployments"]  # one code location
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    workspace = load_yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]
    args = deployment["dagsterApiGrpcArgs"]
    module, attribute = args[args.index("--module-name") + 1], args[args.index("--attribute") + 1]
    assert (module, attribute) == (workspace["module_name"], workspace["attribute"]) == ("credit_pipeline.defs.definitions", "defs")
    assert module == pyproject["tool"]["dg"]["project"]["code_location_target_module"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # runs get the same secrets and policy
    assert values["dagsterWebserver"]["enableReadOnly"] is True
    assert values["dagsterDaemon"]["enabled"] is True  # the chart runs exactly one replica of it
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    # the chart's Dagster image is the release the project pins
    assert values["dagsterWebserver"]["image"]["tag"] == values["dagsterDaemon"]["image"]["tag"] == dagster.__version__


def test_secrets_and_env_use_the_names_the_code_reads():
    values = load_yaml(VALUES)
    deployment = values["dagster-user-deployments"]["deployments"][0]
    names = code_env_names()
    plain = {env["name"] for env in deployment["env"]}
    assert plain <= names, plain - names
    secret_keys = {"CREDIT_PIPELINE_DATABASE_URL", "GITHUB_TOKEN", "DISCORD_BOT_TOKEN"}
    assert secret_keys <= names
    assert [s["name"] for s in deployment["envSecrets"]] == ["credit-pipeline-secrets"]
    docs = DOCS.read_text(encoding="utf-8")
    for key in secret_keys:  # docs/deploy.md creates the Secret with exactly these keys
        assert f"--from-literal={key}=" in docs, key
    policy_mount = deployment["volumeMounts"][0]["mountPath"]
    assert dict((e["name"], e.get("value")) for e in deployment["env"])["CREDIT_PIPELINE_POLICY"] == f"{policy_mount}/policy.yaml"


def test_dockerfile_builds_the_user_code_image_without_dev_extras():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    installs = [line for line in instructions if "pip install" in line]
    assert len(installs) == 1 and "[dev]" not in installs[0] and "-e " not in installs[0]
    pins = dict(re.findall(r'"(dagster[a-z0-9-]*)==([0-9.]+)"', installs[0]))
    assert pins == {"dagster-k8s": dagster_k8s.__version__}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    postgres_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("dagster-postgres=="))
    assert postgres_pin.split("==")[1] == pins["dagster-k8s"]  # the integrations move together
    assert "COPY sql /opt/credit_pipeline/sql" in text and "CREDIT_PIPELINE_SQL_DIR=/opt/credit_pipeline/sql" in text
    assert "credit_pipeline.defs.definitions" in text


# -- docs/deploy.md's commands are real ------------------------------------------------------------


def shell_lines(text: str) -> list[str]:
    """The commands of the ```sh blocks, continuation lines joined, comments dropped."""
    lines, joined = [], ""
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for raw in block.splitlines():
            line = raw.split("  #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            joined = f"{joined} {line.rstrip(chr(92)).strip()}".strip() if joined else line.rstrip(chr(92)).strip()
            if line.endswith("\\"):
                continue
            if joined:
                lines.append(joined)
            joined = ""
    return lines


def credit_pipeline_argv(tokens: list[str]) -> list[str] | None:
    """The arguments of a `credit-pipeline` command line: run directly (after VAR=value prefixes) or through
    `kubectl ... -- credit-pipeline ...`."""
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        tokens = tokens[1:]
    if tokens[:1] == ["credit-pipeline"]:
        return tokens[1:]
    if tokens[:1] == ["kubectl"] and "--" in tokens and tokens[tokens.index("--") + 1:][:1] == ["credit-pipeline"]:
        return tokens[tokens.index("--") + 2:]
    return None


def test_every_credit_pipeline_command_in_the_deploy_doc_parses():
    commands = [credit_pipeline_argv(shlex.split(line)) for line in shell_lines(DOCS.read_text(encoding="utf-8"))]
    ours = [argv for argv in commands if argv is not None]
    assert ["db", "upgrade"] in ours and ["dev"] in ours
    parser = build_parser()
    for argv in ours:
        parser.parse_args(argv)  # exits 2 on anything the CLI does not accept


def test_deploy_doc_creates_the_finalize_pool_with_its_real_name():
    docs = DOCS.read_text(encoding="utf-8")
    assert f"dagster instance concurrency set {FINALIZE_POOL} 1" in docs
    assert "dagster instance migrate" in docs or "migrate.enabled=true" in docs
