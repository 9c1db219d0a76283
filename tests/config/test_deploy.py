"""The deployment files for several replicas (config/deploy, README "Running several replicas").

What can be checked without a container engine or systemd running services: the compose file is valid
(``docker-compose config``, Debian's Compose 1.29, which reads the file without an engine) and has the
parts the README promises; the systemd units pass ``systemd-analyze verify``; the image definition has
what a replica needs; the ClickHouse and balancer configurations agree with both. No image was built and
no container or unit was run here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "config" / "deploy"
NO_COMPOSE = (
    "docker-compose not found: `make test` installs it (Debian's docker-compose package) where it can"
)
NO_SYSTEMD = "systemd-analyze not found"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def proxies(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if name.startswith("proxy-")}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service.get("environment", {}).items()}


def test_compose_has_a_cluster_a_migration_replicas_and_a_balancer() -> None:
    doc = compose()
    assert {"keeper", "clickhouse-1", "clickhouse-2", "migrate", "lb"} <= set(doc["services"])
    replicas = proxies(doc)
    assert len(replicas) >= 2
    migrate = doc["services"]["migrate"]
    assert migrate["command"] == ["beaconproxy", "migrate"] and migrate["restart"] == "no"
    assert env_of(migrate)["BEACONPROXY_CLICKHOUSE__DSN"].startswith("http://migrator:")
    volumes = []
    for name, svc in replicas.items():
        env = env_of(svc)
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert env["BEACONPROXY_CLICKHOUSE__MANAGE_SCHEMA"] == "false"
        assert env["BEACONPROXY_CLICKHOUSE__DSN"].startswith("http://beacon:"), "the user without DDL rights"
        assert env["BEACONPROXY_CLICKHOUSE__CLUSTER"] == env_of(migrate)["BEACONPROXY_CLICKHOUSE__CLUSTER"]
        assert env["BEACONPROXY_PRIVACY__PSEUDONYM_SECRET_FILE"].startswith("/run/secrets/")
        assert env["BEACONPROXY_SERVER__ADMIN_TOKEN_FILE"].startswith("/run/secrets/")
        assert "PASSWORD" not in str(env) or "${CH_REPLICA_PASSWORD" in env["BEACONPROXY_CLICKHOUSE__DSN"]
        [volume] = svc["volumes"]
        assert volume.endswith(":/data")
        volumes.append(volume.split(":")[0])
        grace = int(re.fullmatch(r"(\d+)s", svc["stop_grace_period"]).group(1))  # type: ignore[union-attr]
        assert grace > 10 + 30, "more than the shipping grace plus the requests' own"
    assert len(set(volumes)) == len(volumes), "a spool volume per replica, never shared"
    assert set(volumes) <= set(doc["volumes"])


def test_the_replicas_trust_only_the_balancer_and_it_reaches_every_replica() -> None:
    doc = compose()
    lb_ip = doc["services"]["lb"]["networks"]["beacon"]["ipv4_address"]
    subnet = doc["networks"]["beacon"]["ipam"]["config"][0]["subnet"]
    for svc in proxies(doc).values():
        assert env_of(svc)["BEACONPROXY_SERVER__TRUSTED_PROXIES"] == f'["{subnet}"]'
    assert lb_ip.startswith(subnet.rsplit(".", 1)[0])
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert set(re.findall(r"server (proxy-\d+):8080", nginx)) == set(proxies(doc))
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in nginx
    assert re.search(r"location /admin/ \{\s*return 404;", nginx)


def test_the_clickhouse_configuration_matches_the_cluster_the_replicas_name() -> None:
    cluster = env_of(compose()["services"]["migrate"])["BEACONPROXY_CLICKHOUSE__CLUSTER"]
    servers = ET.parse(DEPLOY / "clickhouse" / "cluster.xml").getroot().find("remote_servers")
    assert servers is not None and servers.find(cluster) is not None
    hosts = [r.findtext("host") for r in servers.iter("replica")]
    assert hosts == ["clickhouse-1", "clickhouse-2"]
    replicas = [
        ET.parse(DEPLOY / "clickhouse" / f"macros-{n}.xml").getroot().findtext("macros/replica")
        for n in (1, 2)
    ]
    assert replicas == hosts, "{replica} differs per server, {shard} is the same: one shard, two replicas"
    grants = {
        user.tag: [q.text for q in user.iter("query")]
        for user in ET.parse(DEPLOY / "clickhouse" / "users.xml").getroot().find("users")  # type: ignore[union-attr]
    }
    assert grants["beacon"] == ["GRANT SELECT, INSERT, ALTER DELETE ON beacon.*"]
    assert any("CREATE TABLE" in q for q in grants["migrator"] if q)
    ET.parse(DEPLOY / "clickhouse" / "keeper.xml")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason=NO_COMPOSE)
def test_compose_file_is_valid(tmp_path: Path) -> None:
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    (work / "secrets").mkdir()
    for name in ("pseudonym_secret", "admin_token"):
        (work / "secrets" / name).write_text("x\n")
    env = {"PATH": "/usr/bin:/bin", "CH_MIGRATOR_PASSWORD": "m", "CH_REPLICA_PASSWORD": "r"}
    result = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config", "-q"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config", "-q"],
        cwd=work,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "set it in .env" in missing.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=NO_SYSTEMD)
def test_systemd_units_verify(tmp_path: Path) -> None:
    venv_bin = shutil.which("beaconproxy", path=str(REPO / ".venv" / "bin")) or shutil.which("beaconproxy")
    assert venv_bin is not None
    units = []
    for source, name in (
        ("beaconproxy@.service", "beaconproxy@a.service"),
        ("beaconproxy-migrate.service", None),
    ):
        text = (DEPLOY / "systemd" / source).read_text()
        assert "/opt/beaconproxy/.venv/bin/beaconproxy" in text
        target = tmp_path / (name or source)
        target.write_text(text.replace("/opt/beaconproxy/.venv/bin/beaconproxy", venv_bin))
        units.append(str(target))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    replica = (DEPLOY / "systemd" / "beaconproxy@.service").read_text()
    assert "StateDirectory=beaconproxy/%i" in replica and "KillSignal=SIGTERM" in replica
    assert "BEACONPROXY_PRIVACY__PSEUDONYM_SECRET_FILE=%d/" in replica


def test_the_image_definition_has_what_a_replica_needs() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in sorted({p.split(".")[0] for p in packages}):  # a top-level copy brings its subpackages
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), f"{package} is not copied in"
    assert re.search(r"^USER beacon$", text, re.M), "not root"
    assert 'VOLUME ["/data"]' in text and "BEACONPROXY_DATA_DIR=/data" in text
    assert "STOPSIGNAL SIGTERM" in text and "/readyz" in text
    command = re.search(r'^CMD \["beaconproxy", "(\w+)"\]$', text, re.M)
    assert command is not None
    assert command.group(1) in build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
