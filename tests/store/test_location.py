"""parse_location: URI forms, normalisation, validation, credentials from options and environment."""
from __future__ import annotations

import os

import pytest
from core_helpers import hermetic_aws  # noqa: F401

import lakevec
from lakevec.store.location import parse_location

pytestmark = pytest.mark.usefixtures("hermetic_aws")

KEYS = {"aws_access_key_id": "AK", "aws_secret_access_key": "SK"}


@pytest.mark.parametrize("given,expected", [
    ("/data/lake", "/data/lake"),
    ("/data/lake/", "/data/lake"),
    ("file:///data/lake", "/data/lake"),
    ("/data/./x/../lake", "/data/lake"),
])
def test_local_paths(given, expected):
    loc = parse_location(given)
    assert loc.uri == expected and loc.scheme == "file" and loc.is_local
    assert loc.lance_options() is None
    assert loc.join("t", "data.lance") == expected + "/t/data.lance"
    assert loc.child("t").uri == expected + "/t"


def test_relative_and_home_paths(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert parse_location("lake").uri == str(tmp_path / "lake")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_location("~/lake2").uri == str(tmp_path / "lake2")
    assert parse_location(tmp_path / "p").uri == str(tmp_path / "p")  # PathLike


@pytest.mark.parametrize("given,bucket,prefix,uri", [
    ("s3://bucket/pre/fix", "bucket", "pre/fix", "s3://bucket/pre/fix"),
    ("s3://bucket/pre/fix/", "bucket", "pre/fix", "s3://bucket/pre/fix"),
    ("s3://bucket", "bucket", "", "s3://bucket"),
    ("s3://bucket/", "bucket", "", "s3://bucket"),
    ("s3a://my.bucket-1/x", "my.bucket-1", "x", "s3://my.bucket-1/x"),
    ("s3://bucket/with?question#hash", "bucket", "with?question#hash", "s3://bucket/with?question#hash"),
])
def test_s3_uris(given, bucket, prefix, uri):
    loc = parse_location(given, KEYS)
    assert (loc.scheme, loc.bucket, loc.prefix, loc.uri) == ("s3", bucket, prefix, uri)
    assert not loc.is_local
    assert loc.fs_path(loc.join("t")) == f"{bucket}/{prefix + '/' if prefix else ''}t"
    child = loc.child("t", "data.lance")
    assert child.uri == loc.join("t", "data.lance") and child.bucket == bucket
    assert child.prefix == "/".join(x for x in (prefix, "t", "data.lance") if x)


@pytest.mark.parametrize("bad,needle", [
    ("", "empty"), ("   ", "empty"), (None, "string"), (42, "string"),
    ("s3://", "bucket"), ("s3://UPPER/x", "bucket"), ("s3://a/x", "bucket"), ("s3://bad_bucket/x", "bucket"),
    ("s3://bucket/a//b", "segment"), ("s3://bucket/a/../b", "segment"), ("s3://bucket/./b", "segment"),
    ("gs://bucket/x", "scheme"), ("http://host/x", "scheme"), ("hdfs://nn/x", "scheme"),
])
def test_invalid_uris(bad, needle):
    with pytest.raises(lakevec.InvalidNameError) as ei:
        parse_location(bad, KEYS)
    assert needle in str(ei.value)


def test_storage_options_must_be_a_dict():
    with pytest.raises(lakevec.InvalidArgumentError, match="storage_options"):
        parse_location("s3://bucket/x", [("aws_access_key_id", "x")])


def test_credentials_from_options():
    loc = parse_location("s3://bucket/x", {**KEYS, "aws_endpoint": "http://127.0.0.1:9000", "aws_region": "eu-west-1"})
    o = loc.lance_options()
    assert o["aws_access_key_id"] == "AK" and o["aws_secret_access_key"] == "SK"
    assert o["aws_endpoint"] == "http://127.0.0.1:9000" and o["aws_region"] == "eu-west-1"
    assert o["allow_http"] == "true"  # an http:// endpoint needs it
    assert "connect_timeout" in o  # an unreachable store must fail in seconds


def test_https_endpoint_does_not_allow_http():
    o = parse_location("s3://bucket/x", {**KEYS, "aws_endpoint": "https://s3.example.com"}).lance_options()
    assert "allow_http" not in o


def test_options_keys_are_case_insensitive_and_values_strings():
    o = parse_location("s3://bucket/x", {"AWS_ACCESS_KEY_ID": "AK", "aws_secret_access_key": "SK",
                                          "allow_http": True}).options
    assert o["aws_access_key_id"] == "AK" and o["allow_http"] == "True"


def test_credentials_from_environment(hermetic_aws):
    hermetic_aws.setenv("AWS_ACCESS_KEY_ID", "envAK")
    hermetic_aws.setenv("AWS_SECRET_ACCESS_KEY", "envSK")
    hermetic_aws.setenv("AWS_SESSION_TOKEN", "tok")
    hermetic_aws.setenv("AWS_ENDPOINT_URL", "http://localhost:1234")
    hermetic_aws.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    o = parse_location("s3://bucket/x").options
    assert (o["aws_access_key_id"], o["aws_secret_access_key"], o["aws_session_token"]) == ("envAK", "envSK", "tok")
    assert o["aws_endpoint"] == "http://localhost:1234" and o["aws_region"] == "ap-south-1"
    # explicit options win over the environment
    o = parse_location("s3://bucket/x", {"aws_access_key_id": "optAK", "aws_region": "us-west-2"}).options
    assert o["aws_access_key_id"] == "optAK" and o["aws_secret_access_key"] == "envSK"
    assert o["aws_region"] == "us-west-2"
    # AWS_REGION wins over AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL
    hermetic_aws.setenv("AWS_REGION", "eu-north-1")
    hermetic_aws.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:1")
    o = parse_location("s3://bucket/x").options
    assert o["aws_region"] == "eu-north-1" and o["aws_endpoint"] == "http://s3only:1"


def test_default_region():
    assert parse_location("s3://bucket/x", KEYS).options["aws_region"] == "us-east-1"


@pytest.mark.parametrize("opts,missing", [
    (None, "aws_access_key_id"),
    ({"aws_access_key_id": "AK"}, "aws_secret_access_key"),
    ({"aws_secret_access_key": "SK"}, "aws_access_key_id"),
    ({"aws_access_key_id": "", "aws_secret_access_key": "SK"}, "aws_access_key_id"),
])
def test_missing_credentials(opts, missing):
    with pytest.raises(lakevec.CredentialsError) as ei:
        parse_location("s3://bucket/lake", opts)
    msg = str(ei.value)
    assert "s3://bucket/lake" in msg and missing in msg and "AWS_ACCESS_KEY_ID" in msg


def test_default_chain_opt_in():
    loc = parse_location("s3://bucket/x", {"aws_use_default_chain": "true"})
    assert "aws_use_default_chain" not in loc.lance_options()
    assert "aws_access_key_id" not in loc.lance_options()


def test_local_location_ignores_aws_environment(hermetic_aws):
    hermetic_aws.setenv("AWS_ACCESS_KEY_ID", "x")
    loc = parse_location("/tmp/lake")
    assert loc.options == {} and loc.lance_options() is None
    assert os.path.isabs(loc.uri)
