"""Offline checks of deploy/, run by scripts/validate-deploy.sh inside its venv.

  validate_deploy.py manifests SCHEMAS_DIR FILE...
      Every document of every FILE (multi-document YAML): built-in kinds (core, apps, batch,
      policy) with `kubernetes-validate --strict`; custom resources (KEDA ScaledObject,
      Prometheus-operator ServiceMonitor, ...) against the openAPIV3Schema of their
      CustomResourceDefinition in SCHEMAS_DIR, with unknown fields rejected as the API server's
      strict field validation does. Also: each ScaledObject targets a Deployment of the same file.

  validate_deploy.py monitoring DASHBOARD_JSON RULES_YAML
      The Grafana dashboard: JSON with a uid, the `datasource` and `function` variables, every
      panel on the `${datasource}` data source with queries, every query of a jetfn_ metric with
      a `function` label filtered by `$function`. The rules file: groups of alerts, each with an
      expression and `summary` and `description` annotations.

  validate_deploy.py compose FILE
      The compose stack parses, has its services, and the files it mounts or builds from exist
      and parse (YAML, JSON); Prometheus's rule_files are mounted into it.
"""

import copy
import json
import pathlib
import subprocess
import sys
import tempfile

import jsonschema
import yaml

BUILT_IN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}
# The oldest Kubernetes the manifests must suit, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", None]


def fail(message):
    print(f"validate-deploy: {message}", file=sys.stderr)
    sys.exit(1)


def group_of(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def load_crds(schemas_dir):
    """(group, version, kind) -> openAPIV3Schema, from every CRD file in schemas_dir."""
    schemas = {}
    for path in sorted(pathlib.Path(schemas_dir).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                key = (spec["group"], version["name"], spec["names"]["kind"])
                schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    if not schemas:
        fail(f"no CustomResourceDefinition in {schemas_dir}")
    return schemas


def strict(schema):
    """The schema with `additionalProperties: false` on every object that lists its properties
    and does not preserve unknown fields: a misspelt field is an error, not silently pruned."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    return schema


def check_manifests(schemas_dir, files):
    crds = load_crds(schemas_dir)
    built_in = []
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for file in files:
            docs = [d for d in yaml.safe_load_all(pathlib.Path(file).read_text()) if d]
            if not docs:
                fail(f"{file}: no documents")
            deployments = {d["metadata"]["name"] for d in docs if d.get("kind") == "Deployment"}
            for index, doc in enumerate(docs):
                count += 1
                where = f"{file}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
                group = group_of(api_version)
                if group in BUILT_IN_GROUPS:
                    path = pathlib.Path(tmp) / f"{len(built_in):04d}.yaml"
                    path.write_text(yaml.safe_dump(doc))
                    built_in.append((path, where))
                    continue
                version = api_version.split("/")[-1]
                schema = crds.get((group, version, kind))
                if schema is None:
                    fail(f"{where}: no CRD schema for {api_version} {kind} in {schemas_dir}")
                errors = sorted(
                    jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
                )
                for error in errors:
                    path = "/".join(str(p) for p in error.path)
                    print(f"{where}: {path}: {error.message}", file=sys.stderr)
                if errors:
                    fail(f"{where}: does not match the {kind} schema")
                if kind == "ScaledObject":
                    target = doc["spec"]["scaleTargetRef"]["name"]
                    if target not in deployments:
                        fail(f"{where}: scales Deployment {target}, which {file} does not define")
        for version in KUBERNETES_VERSIONS:
            # Beside this interpreter: the venv's bin/ need not be on PATH.
            tool = pathlib.Path(sys.executable).parent / "kubernetes-validate"
            command = [str(tool), "--strict", "--quiet"]
            if version:
                command += ["--kubernetes-version", version]
            result = subprocess.run(
                command + [str(p) for p, _ in built_in], capture_output=True, text=True
            )
            if result.returncode != 0:
                print(result.stdout + result.stderr, file=sys.stderr)
                fail(f"built-in kinds fail kubernetes-validate --strict ({version or 'default'} schemas)")
    print(f"validate-deploy: {count} objects valid ({len(built_in)} built-in, {count - len(built_in)} custom) in {', '.join(files)}")


# jetfn metrics without a `function` label: queries of them cannot filter by it.
PROCESS_METRICS = ("jetfn_nats_connected",)


def check_monitoring(dashboard_file, rules_file):
    try:
        dashboard = json.loads(pathlib.Path(dashboard_file).read_text())
    except json.JSONDecodeError as error:
        fail(f"{dashboard_file}: not JSON: {error}")
    if not dashboard.get("uid"):
        fail(f"{dashboard_file}: no uid")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        fail(f"{dashboard_file}: no `datasource` variable")
    if variables.get("function", {}).get("type") != "query":
        fail(f"{dashboard_file}: no `function` query variable")
    panels = dashboard.get("panels", [])
    if not panels:
        fail(f"{dashboard_file}: no panels")
    queries = 0
    for panel in panels:
        where = f"{dashboard_file}: panel {panel.get('title')!r}"
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"{where}: not on the ${{datasource}} data source")
        targets = panel.get("targets", [])
        if not targets:
            fail(f"{where}: no queries")
        for target in targets:
            expr = target.get("expr", "")
            queries += 1
            if "jetfn_" not in expr:
                fail(f"{where}: {expr!r} queries no jetfn metric")
            if not any(m in expr for m in PROCESS_METRICS) and '=~"$function"' not in expr:
                fail(f"{where}: {expr!r} is not filtered by $function")
    rules = yaml.safe_load(pathlib.Path(rules_file).read_text())
    alerts = [r for g in rules.get("groups", []) for r in g.get("rules", [])]
    if not alerts:
        fail(f"{rules_file}: no rules")
    for rule in alerts:
        where = f"{rules_file}: {rule.get('alert')}"
        if not rule.get("alert") or not rule.get("expr"):
            fail(f"{where}: an alerting rule needs `alert` and `expr`")
        for key in ("summary", "description"):
            if not rule.get("annotations", {}).get(key):
                fail(f"{where}: no {key} annotation")
    print(f"validate-deploy: {dashboard_file}: {len(panels)} panels, {queries} queries; {rules_file}: {len(alerts)} alerts")


def check_compose(file):
    path = pathlib.Path(file)
    compose = yaml.safe_load(path.read_text())
    services = compose.get("services", {})
    for name in ("nats", "functions", "jaeger", "prometheus", "grafana"):
        if name not in services:
            fail(f"{file}: no service {name}")
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            fail(f"{file}: service {name} has neither image nor build")
        build = service.get("build")
        if build:
            context = path.parent / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                fail(f"{file}: service {name} builds from {dockerfile}, which does not exist")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not (path.parent / source).exists():
                    fail(f"{file}: service {name} mounts {source}, which does not exist")
                if source.endswith((".yml", ".yaml")):
                    yaml.safe_load((path.parent / source).read_text())
                if source.endswith(".json"):
                    json.loads((path.parent / source).read_text())
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                fail(f"{file}: service {name} depends on unknown service {dependency}")
    check_prometheus_mounts(file, services.get("prometheus", {}))
    check_grafana_mounts(file, services.get("grafana", {}))
    print(f"validate-deploy: {file}: {len(services)} services")


def mounts(service):
    """container path -> host path (relative to the compose file) of a service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str) and volume.startswith("."):
            parts = volume.split(":")
            found[parts[1]] = parts[0]
    return found


def check_prometheus_mounts(file, service):
    path = pathlib.Path(file)
    mounted = mounts(service)
    config = mounted.get("/etc/prometheus/prometheus.yml")
    if not config:
        fail(f"{file}: prometheus does not mount its prometheus.yml")
    for rule_file in yaml.safe_load((path.parent / config).read_text()).get("rule_files", []):
        if rule_file not in mounted:
            fail(f"{file}: prometheus loads {rule_file}, which is not mounted")


def check_grafana_mounts(file, service):
    path = pathlib.Path(file)
    mounted = mounts(service)
    providers = [
        p for target, source in mounted.items() if target.startswith("/etc/grafana/provisioning/dashboards/")
        for p in yaml.safe_load((path.parent / source).read_text()).get("providers", [])
    ]
    if not any(s for t, s in mounted.items() if t.startswith("/etc/grafana/provisioning/datasources/")):
        fail(f"{file}: grafana has no data source provisioned")
    dashboards = [t for t in mounted if t.endswith(".json")]
    if not providers or not dashboards:
        fail(f"{file}: grafana has no dashboard provisioned")
    for dashboard in dashboards:
        if not any(dashboard.startswith(p.get("options", {}).get("path", "//") + "/") for p in providers):
            fail(f"{file}: grafana mounts {dashboard} outside every dashboard provider's path")


def main(argv):
    if len(argv) >= 3 and argv[0] == "manifests":
        check_manifests(argv[1], argv[2:])
    elif len(argv) == 3 and argv[0] == "monitoring":
        check_monitoring(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "compose":
        check_compose(argv[1])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
