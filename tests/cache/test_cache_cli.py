"""``lakevec cache stats|warm|pin|unpin|evict|clear`` and ``lakevec stats TABLE`` on a lake on S3."""
from __future__ import annotations

import json

import pytest

from lakevec.cli.main import main


@pytest.fixture
def cli(s3_server, s3_table, tmp_path, monkeypatch, capsys):
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LAKEVEC_LAKE", s3_table.uri)
    monkeypatch.setenv("LAKEVEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAKEVEC_CACHE_BYTES", raising=False)

    def run(*argv, code=0):
        capsys.readouterr()
        rc = main(["--json", "--quiet", *argv])
        out = capsys.readouterr()
        assert rc == code, out.err
        return json.loads(out.out) if out.out.strip() else None
    return run


def test_cache_commands(cli, s3_table, monkeypatch):
    st = cli("cache", "stats", "--cache-bytes", "300K")
    assert st["enabled"] and st["files"] == 0 and st["budget_bytes"] == 300 << 10
    w = cli("cache", "warm", "vecs", "--partitions", "0,1", "--partitions", "2")
    expect = sum(s3_table.partition_bytes[p] for p in (0, 1, 2))
    assert w["partitions"] == 3 and w["bytes_downloaded"] == expect and w["io"]["gets"] >= 6
    st = cli("cache", "stats")  # no --cache-bytes: the budget recorded by the previous command
    assert st["used_bytes"] == expect and st["budget_bytes"] == 300 << 10
    assert st["tables"][0]["partitions"] == 3
    ts = cli("stats", "vecs")
    tiers = {p["partition"]: p["tier"] for p in ts["partitions"]}
    assert [p for p, tier in tiers.items() if tier == "hot"] == [0, 1, 2]
    assert ts["bytes_per_tier"] == {"object_store": s3_table.data_bytes, "nvme_cache": expect}
    assert ts["rows"] == 12000 and ts["num_partitions"] == 30
    p = cli("cache", "pin", "vecs", "--partitions", "3")
    assert p["pinned"] and cli("cache", "stats")["pinned_partitions"] == 1
    assert cli("cache", "unpin")["partitions"] == 1
    ev = cli("cache", "evict", "vecs", "--partitions", "0")
    assert ev["files"] == 1 and ev["bytes"] == s3_table.partition_bytes[0]
    monkeypatch.setenv("LAKEVEC_PRICES", '{"get_per_1000": 1000}')  # $1 per GET
    ts = cli("stats", "vecs")
    assert ts["estimated_cost_usd"] == pytest.approx(ts["counters"]["gets"] * 1.0, abs=0.01) and ts["counters"]["gets"] > 0
    assert cli("cache", "stats")["prices"]["get_per_1000"] == 1000
    monkeypatch.setenv("LAKEVEC_PRICES", '{"gets": 1}')
    assert cli("cache", "stats", code=1)["error"]["type"] == "InvalidArgumentError"
    monkeypatch.delenv("LAKEVEC_PRICES")
    cl = cli("cache", "clear")
    assert cl["files"] == 3 and cli("cache", "stats")["files"] == 0


def test_cache_command_errors(cli, monkeypatch):
    err = cli("cache", "warm", "missing_table", code=1)
    assert err["error"]["type"] == "TableNotFoundError"
    assert cli("cache", "evict", "--partitions", "1", code=2)["error"]["type"] == "UsageError"
    assert cli("cache", "warm", "vecs", "--partitions", "x", code=2)["error"]["type"] == "UsageError"
    monkeypatch.delenv("LAKEVEC_CACHE_DIR")
    assert "--cache-dir" in cli("cache", "stats", code=2)["error"]["message"]
    ts = cli("stats", "vecs")  # stats without a cache: everything is cold
    assert ts["bytes_per_tier"]["nvme_cache"] == 0 and ts["cache"]["enabled"] is False
