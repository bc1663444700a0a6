"""Config strictness, migrations, retention settings (pure logic and against Cassandra)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from cassandra.cluster import Session

from alpr_common.config import ConfigError, load_config
from hub.config import HubConfig, RetentionConfig
from hub.schema import Migration, MigrationError, load_migrations, migrate
from tests.conftest import make_hub_config
from tests.support import ROOT


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "hub.yaml"
    p.write_text("cassandra:\n  keyspce: alpr\n")
    with pytest.raises(ConfigError, match=r"cassandra\.keyspce: unknown key"):
        load_config(HubConfig, p, "ALPR_HUB", environ={})


def test_env_overrides_nested_and_list_values(tmp_path: Path) -> None:
    p = tmp_path / "hub.yaml"
    p.write_text("grpc_port: 50051\ncassandra:\n  port: 9042\n")
    env = {
        "ALPR_HUB__GRPC_PORT": "50099",
        "ALPR_HUB__CASSANDRA__CONTACT_POINTS": "10.1.0.1,10.1.0.2",
        "ALPR_HUB__RETENTION__READ_TTL_SECONDS": "600",
        "OTHER": "x",
    }
    cfg = load_config(HubConfig, p, "ALPR_HUB", environ=env)
    assert cfg.grpc_port == 50099 and cfg.cassandra.port == 9042
    assert cfg.cassandra.contact_points == ["10.1.0.1", "10.1.0.2"]
    assert cfg.retention.read_ttl_seconds == 600


def test_default_retention_is_sixty_days_in_about_25_windows() -> None:
    r = RetentionConfig()
    assert r.read_ttl_seconds == 5_184_000
    unit, size = r.twcs_window()
    assert (unit, size) == ("DAYS", 2)
    assert 20 <= 60 / size <= 30
    assert RetentionConfig(read_ttl_seconds=3600).twcs_window() == ("MINUTES", 2)


def test_nts_replication_needs_a_datacenter() -> None:
    with pytest.raises(ValueError, match="local_dc"):
        HubConfig.model_validate({"cassandra": {"replication_class": "NetworkTopologyStrategy"}})
    cfg = HubConfig.model_validate(
        {
            "cassandra": {
                "replication_class": "NetworkTopologyStrategy",
                "local_dc": "dc1",
                "replication_factor": 3,
            }
        }
    )
    assert cfg.cassandra.replication_map() == {"class": "NetworkTopologyStrategy", "dc1": 3}


def test_migrations_are_numbered_without_gaps(tmp_path: Path) -> None:
    assert [m.version for m in load_migrations()] == list(range(1, len(load_migrations()) + 1))
    (tmp_path / "001_a.cql").write_text("SELECT 1;")
    (tmp_path / "003_c.cql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)


def test_no_delete_of_read_data_anywhere() -> None:
    """Reads expire by TTL; a DELETE would also leave tombstones that block TWCS drops."""
    files = subprocess.run(["git", "ls-files", "*.py", "*.cql"], cwd=ROOT, capture_output=True, text=True).stdout
    pattern = re.compile(r"(DELETE\s+FROM|TRUNCATE)\s+[\w{}.]*reads_by_", re.IGNORECASE)
    offenders = [n for n in files.split() if not n.startswith("tests/") and pattern.search((ROOT / n).read_text())]
    assert offenders == []


def test_migrate_records_checksums_and_refuses_edited_migrations(
    cassandra: tuple[list[str], int], cql: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = f"alpr_mig_{uuid.uuid4().hex[:8]}"
    cfg = make_hub_config(cassandra, ks)
    try:
        applied = migrate(cql, cfg)
        assert applied == [m.version for m in load_migrations()]
        rows = {r.version: r for r in cql.execute(f"SELECT * FROM {ks}.schema_migrations")}
        for m in load_migrations():
            assert rows[m.version].checksum == m.checksum and rows[m.version].name == m.name
        assert migrate(cql, cfg) == []

        edited = [Migration(m.version, m.name, m.template + "\n-- edited\n") for m in load_migrations()]
        monkeypatch.setattr("hub.schema.load_migrations", lambda: edited)
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(cql, cfg)
        monkeypatch.undo()

        # A retention change in the config is applied to the existing tables.
        migrate(cql, make_hub_config(cassandra, ks, retention={"read_ttl_seconds": 7200}))
        meta = cql.execute(
            "SELECT default_time_to_live, compaction FROM system_schema.tables "
            "WHERE keyspace_name=%s AND table_name='reads_by_plate'",
            [ks],
        ).one()
        assert meta.default_time_to_live == 7200
        assert meta.compaction["compaction_window_unit"] == "MINUTES"
    finally:
        cql.execute(f"DROP KEYSPACE IF EXISTS {ks}")
