"""Checks deploy/kubernetes without a cluster (kubectl's dry run needs an API
server, and none runs here): every manifest parses and has its API version;
the StatefulSet, its Services, PodDisruptionBudget, ConfigMap and Secrets
name one another consistently; the probes ask txcoord's health service for
names the server sets (server/server.cc); the pod runs as the image's user
(deploy/image/build.sh); and the configuration in the ConfigMap, with its
${NAME}s from the pod's environment, is accepted by txcoord itself
(--check-config), its ports and files matching the container's.

usage: kubernetes_manifests_test.py REPO TXCOORD_BINARY
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

REPO, TXCOORD = sys.argv[1], sys.argv[2]
K8S = os.path.join(REPO, "deploy", "kubernetes")
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def load(name):
    with open(os.path.join(K8S, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


API = {"ConfigMap": "v1", "Secret": "v1", "Service": "v1", "StatefulSet": "apps/v1",
       "PodDisruptionBudget": "policy/v1"}
kustomization = load("kustomization.yaml")[0]
docs = [d for r in kustomization["resources"] for d in load(r)]
secrets = load("secret.example.yaml")
by_kind = {}
for d in docs + secrets:
    check(d.get("apiVersion") == API.get(d.get("kind")), f"{d.get('kind')}: apiVersion {d.get('apiVersion')}")
    check(bool(d.get("metadata", {}).get("name")), f"{d.get('kind')} without a name")
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
check(not [d for d in docs if d["kind"] == "Secret"], "a Secret (with placeholders) is among the applied resources")

sts = by_kind["StatefulSet"]["txcoord"]
spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
labels = sts["spec"]["template"]["metadata"]["labels"]
matches = lambda selector: all(labels.get(k) == v for k, v in selector.items())  # noqa: E731
check(matches(spec["selector"]["matchLabels"]), "the StatefulSet's selector does not match its pods")
headless = by_kind["Service"].get(spec["serviceName"])
check(headless is not None and headless["spec"].get("clusterIP") == "None", "serviceName is not a headless Service")
for svc in by_kind["Service"].values():
    check(matches(svc["spec"]["selector"]), f"Service {svc['metadata']['name']} selects no txcoord pod")
for pdb in by_kind["PodDisruptionBudget"].values():
    check(matches(pdb["spec"]["selector"]["matchLabels"]), "the PodDisruptionBudget selects no txcoord pod")
check(spec["replicas"] >= 3, "fewer than 3 nodes: a lost one leaves no majority of survivors")

(container,) = pod["containers"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
for svc in by_kind["Service"].values():
    for p in svc["spec"]["ports"]:
        check(p["targetPort"] in ports, f"Service {svc['metadata']['name']}: targetPort {p['targetPort']} is no port")

# Probes: txctl health on txcoord's gRPC port, for health names server.cc
# sets, trusting a CA that is mounted.
with open(os.path.join(REPO, "server", "server.cc")) as f:
    served = set(re.findall(r'SetServingStatus\("([^"]*)"', f.read()))
probes = []
for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
    command = container.get(kind, {}).get("exec", {}).get("command", [])
    check(command[:1] == ["/usr/bin/txctl"] and "health" in command, f"{kind} is not txctl health")
    if "health" not in command:
        continue
    after = command[command.index("health") + 1:]
    service = after[after.index("--service") + 1] if "--service" in after else ""
    check(service in served, f"{kind}: txcoord serves no health status {service!r}")
    check(command[command.index("--address") + 1] == f"127.0.0.1:{ports['grpc']}", f"{kind}: not the gRPC port")
    probes.append((kind, command))
# The image's user.
with open(os.path.join(REPO, "deploy", "image", "build.sh")) as f:
    uid, gid = re.search(r"--config\.user (\d+):(\d+)", f.read()).groups()
ctx = pod["securityContext"]
check(str(ctx["runAsUser"]) == uid and str(ctx["runAsGroup"]) == gid and ctx["runAsNonRoot"],
      "the pod does not run as the image's user")
check(container["securityContext"].get("readOnlyRootFilesystem") is True, "the root filesystem is writable")

# Volumes: each mount has a volume; each ConfigMap and Secret exists.
volumes = {v["name"]: v for v in pod["volumes"]}
mounts = {m["mountPath"]: volumes.get(m["name"]) for m in container["volumeMounts"]}
check(None not in mounts.values(), "a volumeMount names no volume")
for v in volumes.values():
    if "configMap" in v:
        check(v["configMap"]["name"] in by_kind["ConfigMap"], f"no ConfigMap {v['configMap']['name']}")
    if "secret" in v:
        check(v["secret"]["secretName"] in by_kind["Secret"], f"no Secret {v['secret']['secretName']}")
env_secrets = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
for name in env_secrets:
    check(name in by_kind["Secret"], f"envFrom: no Secret {name}")


def file_in_mounts(path):
    """Whether `path` is a key of a ConfigMap or Secret mounted at its folder."""
    folder, key = os.path.split(path)
    v = mounts.get(folder)
    if v is None:
        return False
    if "secret" in v:
        return key in by_kind["Secret"][v["secret"]["secretName"]].get("stringData", {})
    if "configMap" in v:
        return key in by_kind["ConfigMap"][v["configMap"]["name"]]["data"]
    return False


# The configuration, as the pod's environment makes it, checked by txcoord.
(cm_volume,) = [v for v in volumes.values() if "configMap" in v]
config_dir = [p for p, v in mounts.items() if v is cm_volume][0]
check(container["args"] == ["--config", os.path.join(config_dir, "txcoord.yaml")], "args do not name the ConfigMap's file")
text = by_kind["ConfigMap"][cm_volume["configMap"]["name"]]["data"]["txcoord.yaml"]
env = {"PATH": "/usr/bin:/bin", "POD_NAME": "txcoord-0"}
for name in env_secrets:
    env.update(by_kind["Secret"][name]["stringData"])
for e in container.get("env", []):
    check(e["name"] in env, f"env {e['name']} is not given to the check")
with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
    f.write(text)
    f.flush()
    run = subprocess.run([TXCOORD, "--config", f.name, "--check-config"], env=env, capture_output=True, text=True)
check(run.returncode == 0, f"txcoord --check-config: {run.stdout}{run.stderr}")
check("node txcoord-0" in run.stdout, "the node id is not the pod's name")
config = yaml.safe_load(text)
check(config["listen"].endswith(f":{ports['grpc']}"), "listen is not the container's gRPC port")
check(config["metrics_listen"].endswith(f":{ports['metrics']}"), "metrics_listen is not the container's metrics port")
check(config["journal"]["dir"].startswith("/var/lib/txcoord/"), "the journal is not on the data volume")
for path in (config["tls"]["cert"], config["tls"]["key"], config["auth"]["tokens_file"],
             config["journal"]["etcd"]["ca_file"]):
    check(file_in_mounts(path), f"{path}: no mounted Secret or ConfigMap holds it")
for kind, command in probes:
    if "--tls-ca" in command:
        check(file_in_mounts(command[command.index("--tls-ca") + 1]), f"{kind}: its --tls-ca is not mounted")
    else:
        check("tls" not in config, f"{kind}: plaintext to a TLS port")

if failures:
    print("kubernetes manifests:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"kubernetes manifests: {len(docs)} resources and {len(secrets)} example Secrets consistent; "
      f"txcoord accepts the ConfigMap's configuration")
