"""deploy/kubernetes.yaml: valid YAML whose fields agree with the image and the server (not run on a cluster)."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

yaml = pytest.importorskip("yaml")  # PyYAML comes with the test extra's dependencies (transformers, ray)

MANIFEST = REPO / "deploy" / "kubernetes.yaml"
DOCKERFILE = REPO / "Dockerfile"


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def _container(documents) -> dict:
    (container,) = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_a_deployment_and_a_service(documents):
    assert set(documents) == {"Deployment", "Service"}
    deployment, service = documents["Deployment"], documents["Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in _container(documents)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_probes_on_health(documents):
    container = _container(documents)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe


def test_probes_and_memory_leave_room_for_the_measured_worst_case(documents):
    """Readiness never drops a pod for one slow /health under load, and the memory limit is above the peak RSS that
    benchmarks/serve_abuse.py measured (0.78 s and 461 MB, in the comments of the file)."""
    container = _container(documents)
    ready = container["readinessProbe"]
    assert ready.get("timeoutSeconds", 1) >= 2 * 0.78 and ready.get("failureThreshold", 3) >= 2
    live = container["livenessProbe"]
    assert live.get("timeoutSeconds", 1) * live.get("failureThreshold", 3) >= 30
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) * 1.048576 >= 461 * 1.5
    assert container["resources"]["requests"]["memory"] == limit


def test_shutdown_delay_fits_the_grace_period(documents):
    from embedrt.serve.cli import GRACEFUL_SHUTDOWN_S

    env = {e["name"]: e.get("value") for e in _container(documents)["env"]}
    delay = float(env["EMBEDRT_SHUTDOWN_DELAY"])
    grace = documents["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert delay > 0 and grace > delay + GRACEFUL_SHUTDOWN_S


def test_every_environment_variable_is_a_serve_option(documents, capsys):
    from embedrt.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    options = set(re.findall(r"EMBEDRT_[A-Z_]*[A-Z]", capsys.readouterr().out))  # "[env EMBEDRT_X]", wrapped or not
    names = {e["name"] for e in _container(documents)["env"]}
    assert "EMBEDRT_MODEL_DIR" in options and names <= options, names - options


def test_cpu_limit_matches_the_worker_rule(documents):
    """Requests equal limits, in whole CPUs: the server's workers come from the cgroup quota the limit sets."""
    resources = _container(documents)["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    assert float(resources["limits"]["cpu"]).is_integer()


def test_model_from_a_read_only_volume_and_the_image_user(documents):
    container = _container(documents)
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    (mount,) = container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert mount["readOnly"] is True and env["EMBEDRT_MODEL_DIR"].startswith(mount["mountPath"] + "/")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert user is not None and pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_dockerfile_shape():
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["embedrt", "serve"]' in text and "HEALTHCHECK" in text and "/health" in text
    assert "EMBEDRT_HOST=0.0.0.0" in text  # inside the image only: the CLI's default stays 127.0.0.1
    runtime_stage = text.split("AS runtime")[1].split("# ---- exporter")[0]
    assert "torch" not in runtime_stage and "export]" not in runtime_stage
