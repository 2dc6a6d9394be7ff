"""The manifests in deploy/ checked against the catalog and the CLI, so a renamed topic or
flag cannot leave a manifest behind, and against each other (shards, ports, volumes).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from topics.catalog import BY_NAME, WORKER_GROUP
from topics.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


# --- deploy/ manifests -------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.glob("*.yml"), *DEPLOY.glob("*.yaml"), *DEPLOY.glob("k8s/*.yaml")])


def _documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _commands(path: Path) -> list[list[str]]:
    found = []
    for doc in _documents(path):
        for mapping in _walk(doc):
            command = mapping.get("command")
            if isinstance(command, str):
                command = shlex.split(command)
            if isinstance(command, list) and command and command[0] == "csip":
                found.append([str(part) for part in (*command, *mapping.get("args", []))])
    return found


def _all_commands() -> list[list[str]]:
    return [command for path in _yaml_files() for command in _commands(path)]


def _documented_flags() -> dict[str, set[str]]:
    """The "Process flags" table of deploy/README.md: `csip SUBCOMMAND` -> its flags."""
    table: dict[str, set[str]] = {}
    for line in (DEPLOY / "README.md").read_text(encoding="utf-8").splitlines():
        row = re.match(r"^\| `csip ([a-z ]+)` \| (.+) \|$", line)
        if row:
            table[row.group(1)] = set(re.findall(r"`(--[a-z-]+)`", row.group(2)))
    return table


def _config_values() -> dict[str, str]:
    (configmap,) = _documents(DEPLOY / "k8s" / "configmap.yaml")
    return {key: str(value) for key, value in configmap["data"].items()}


def _expand(command: list[str]) -> list[str]:
    values = _config_values()
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], part) for part in command]


def _subcommand(command: list[str]) -> str:
    return " ".join(command[1:3]) if command[1] == "topics" else command[1]


def _flags(command: list[str]) -> list[str]:
    return [part for part in command if part.startswith("--")]


def _option_strings(parser: Any) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings} - {"-h", "--help"}


def _subparser(parser: Any, path: list[str]) -> Any:
    for name in path:
        actions = [a for a in parser._actions if hasattr(a, "choices") and a.choices]
        choices = next((a.choices for a in actions if isinstance(a.choices, dict)), {})
        if name not in choices:
            return None
        parser = choices[name]
    return parser


def test_every_manifest_is_valid_yaml() -> None:
    assert len(_yaml_files()) >= 9
    for path in _yaml_files():
        assert _documents(path), path


def test_manifests_run_every_process() -> None:
    subcommands = {_subcommand(command) for command in _all_commands()}
    assert subcommands == {"topics create", "worker", "gateway", "notifier"}


def test_documented_topics_flags_are_the_real_parser_flags() -> None:
    create = _subparser(build_parser(), ["topics", "create"])
    assert _documented_flags()["topics create"] == _option_strings(create)


def test_every_csip_command_uses_documented_flags_with_values() -> None:
    documented = _documented_flags()
    for command in _all_commands():
        flags = _flags(command)
        assert set(flags) <= documented[_subcommand(command)], command
        assert len(flags) == len(set(flags)), command
        for index, part in enumerate(command):  # every flag the manifests use takes a value
            if part.startswith("--"):
                assert not command[index + 1].startswith("--"), command


# Flags the manifests use that the csip CLI does not have yet (the notifier process is not built
# yet; see deploy/README.md). Remove an entry once the command exists; any other difference
# fails.
PENDING_FLAGS: dict[str, set[str]] = {}


def _without(command: list[str], flags: set[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for part in command:
        if skip:
            skip = False
        elif part in flags:
            skip = True  # the flag and its value
        else:
            kept.append(part)
    return kept


def test_every_csip_command_parses_with_the_real_cli_where_it_exists() -> None:
    from csip.cli import build_parser as csip_parser

    topics_parser, full = build_parser(), csip_parser()
    for command in _all_commands():
        argv = _expand(command)[1:]
        if command[1] == "topics":
            topics_parser.parse_args(argv)
            continue
        subparser = _subparser(full, argv[:1])
        if subparser is None:
            continue  # not in csip yet: the documented table is the contract
        missing = set(_flags(command)) - _option_strings(subparser)
        assert missing <= PENDING_FLAGS.get(command[1], set()), (command[1], missing)
        full.parse_args(_without(argv, missing))


def test_processes_agree_on_shards_prefix_and_brokers() -> None:
    compose = _commands(DEPLOY / "docker-compose.yml")
    shards = {c[c.index("--shards") + 1] for c in compose if "--shards" in c}
    assert shards == {"12"}
    k8s = [c for p in DEPLOY.glob("k8s/*.yaml") for c in _commands(p)]
    assert {c[c.index("--shards") + 1] for c in k8s if "--shards" in c} == {"$(CSIP_SHARDS)"}
    assert {c[c.index("--prefix") + 1] for c in k8s} == {"$(CSIP_TOPIC_PREFIX)"}
    assert {c[c.index("--broker") + 1] for c in k8s} == {"$(CSIP_BROKER)"}
    assert all("--prefix" in c for c in k8s)


def test_topic_names_in_deploy_exist_in_the_catalog() -> None:
    mentioned = set()
    paths = [*_yaml_files(), *DEPLOY.glob("*.md"), DEPLOY / "Dockerfile"]
    for path in paths:
        for match in re.findall(r"\bcsip\.[a-z0-9*][a-z0-9.*-]*", path.read_text("utf-8")):
            mentioned.add(match.rstrip("."))
    assert "csip.commands" in mentioned
    for name in mentioned:
        if name.endswith(".*"):
            assert any(t.startswith(name[:-1]) for t in BY_NAME), name
        else:
            assert name in BY_NAME, f"{name} is not a catalog topic"
    assert WORKER_GROUP in (DEPLOY / "SCALING.md").read_text("utf-8")


def test_compose_runs_three_kraft_nodes_with_replication_3() -> None:
    (compose,) = _documents(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    kafka = [services[f"kafka-{n}"]["environment"] for n in (1, 2, 3)]
    assert [env["KAFKA_NODE_ID"] for env in kafka] == [1, 2, 3]
    for env in kafka:
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    topics = services["topics"]["command"]
    assert topics[topics.index("--replication") + 1] == "3"
    assert topics[topics.index("--broker") + 1] == "kafka-1:9092"


def test_compose_workers_each_have_their_own_state_volume() -> None:
    (compose,) = _documents(DEPLOY / "docker-compose.yml")
    workers = {n: s for n, s in compose["services"].items() if n.startswith("worker-")}
    assert len(workers) >= 2
    volumes = set()
    for service in workers.values():
        data = service["command"][service["command"].index("--data") + 1]
        (mount,) = [v for v in service["volumes"] if v.endswith(f":{data}")]
        volumes.add(mount.split(":")[0])
    assert len(volumes) == len(workers)
    assert compose["services"]["gateway"]["deploy"]["replicas"] >= 2


def test_prometheus_scrapes_every_process_where_it_serves_metrics() -> None:
    (compose,) = _documents(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    (config,) = _documents(DEPLOY / "prometheus.yml")
    targets: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.update(t.split(":") for t in static["targets"])
        for dns in job.get("dns_sd_configs", []):
            targets.update((name, str(dns["port"])) for name in dns["names"])
    for name, service in services.items():
        command = service.get("command", [])
        if command[:1] != ["csip"] or command[1] == "topics":
            continue
        flag = "--admin-port" if command[1] == "gateway" else "--metrics-port"
        assert targets.get(name) == command[command.index(flag) + 1], name


def _k8s() -> list[dict[str, Any]]:
    return [doc for path in sorted(DEPLOY.glob("k8s/*.yaml")) for doc in _documents(path)]


def _kind(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _k8s() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_k8s_workers_are_a_statefulset_with_a_volume_claim_and_a_pdb() -> None:
    workers = _kind("StatefulSet", "csip-worker")
    (claim,) = workers["spec"]["volumeClaimTemplates"]
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    data = container["command"][container["command"].index("--data") + 1]
    assert {"name": claim["metadata"]["name"], "mountPath": data} in container["volumeMounts"]
    pdb = _kind("PodDisruptionBudget", "csip-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        workers["spec"]["template"]["metadata"]["labels"].items()
    )


def test_k8s_gateways_have_an_hpa_a_pdb_and_a_service() -> None:
    gateway = _kind("Deployment", "csip-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    hpa = _kind("HorizontalPodAutoscaler", "csip-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "csip-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _kind("PodDisruptionBudget", "csip-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _kind("Service", "csip-gateway")
    assert service["spec"]["selector"].items() <= labels.items()


def test_k8s_pods_have_probes_resources_and_scrape_annotations() -> None:
    config = _kind("ConfigMap", "csip-config")
    templates = [
        d["spec"]["template"] for d in _k8s() if d["kind"] in {"Deployment", "StatefulSet"}
    ]
    assert len(templates) == 3
    for template in templates:
        (container,) = template["spec"]["containers"]
        command = container["command"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"requests", "limits"} <= set(container["resources"])
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        flag = "--admin-port" if command[1] == "gateway" else "--metrics-port"
        assert annotations["prometheus.io/port"] == command[command.index(flag) + 1]
        assert {"configMapRef": {"name": "csip-config"}} in container["envFrom"]
    for command in [c for p in DEPLOY.glob("k8s/*.yaml") for c in _commands(p)]:
        for variable in re.findall(r"\$\((\w+)\)", " ".join(command)):
            assert variable in config["data"], variable


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = _documents(DEPLOY / "k8s" / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in DEPLOY.glob("k8s/*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert {d["metadata"].get("namespace", "csip") for d in _k8s() if "metadata" in d} == {"csip"}


def _exported_metrics() -> set[str]:
    """Every metric name a csip process registers (the first argument of a prometheus_client
    Counter, Gauge or Histogram in engine/ and gateway/, and the worker's table of gauges)."""
    from engine.runtime.kafka.service import GAUGES

    root = DEPLOY.parent
    names: set[str] = {name for name, _, _ in GAUGES}
    for path in [*root.glob("engine/**/*.py"), *root.glob("gateway/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(csip_\w+)"', text))
    return names


def test_alerts_name_only_metrics_the_processes_export() -> None:
    (config,) = _documents(DEPLOY / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    (compose,) = _documents(DEPLOY / "docker-compose.yml")
    assert (
        "./alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
    )
    (rules,) = _documents(DEPLOY / "alerts.yml")
    exported = _exported_metrics()
    assert {"csip_worker_shards", "csip_http_requests_total", "csip_notify_queued"} <= exported
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len({rule["alert"] for rule in alerts}) == len(alerts)
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = set(re.findall(r"\bcsip_\w+", rule["expr"]))
        used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
        assert used <= exported, (rule["alert"], used - exported)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    compose_commands = _commands(DEPLOY / "docker-compose.yml")
    shards = {c[c.index("--shards") + 1] for c in compose_commands if "--shards" in c}
    (unowned,) = [r for r in alerts if r["alert"] == "CsipShardsWithoutOwner"]
    assert unowned["expr"].endswith(f"< {shards.pop()}")  # the compose file's shard count


def test_the_image_compiles_the_hot_modules_and_checks_they_run_compiled() -> None:
    """No Docker here: read the Dockerfile. Its steps are the ones checked by hand with pip on
    this machine (benchmarks/RESULTS.md, "The compiled fold")."""
    dockerfile = (DEPLOY / "Dockerfile").read_text("utf-8")
    steps = [
        "COPY pyproject.toml setup.py README.md ./",
        "CSIP_COMPILE=1 /opt/csip/bin/pip install --no-build-isolation --no-deps --force-reinstall",
        "assert compiled.kernel() == 'compiled'",
    ]
    positions = [dockerfile.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8").split()
    assert {"**/*.so", "engine/compiled.json", "build"} <= set(ignored)  # never a dev's build
