"""The store on an S3-compatible object store: a real S3 server on 127.0.0.1, credentials enforced.

Why moto's server mode (``moto[server]``, ``ThreadedMotoServer``): it is a maintained, widely used
(getmoto/moto, monthly releases) implementation of the S3 REST API served over real HTTP, so s3fs,
botocore signing and DuckDB's fsspec path run exactly as against AWS; it installs from PyPI with
the test extras (no Docker, no binary download, unlike MinIO), starts in well under a second on
a free loopback port, and can enforce IAM authentication (``INITIAL_NO_AUTH_ACTION_COUNT``), which
the wrong-credentials test needs. It runs in-process, so the suite starts and stops it itself.
"""
from __future__ import annotations

import json
import pickle
import zipfile

import pandas as pd
import pytest

from spark_research.data import BarStore
from spark_research.data.fs import StoreAccessError
from spark_research.data.importer import import_klines, imported_files
from spark_research.data.synthetic import generate_bars
from spark_research.data.universe import generate_universe

BUCKET = "spark-research-test"


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 with one bucket and one IAM user allowed s3:*; auth enforced."""
    import boto3
    from moto import settings as moto_settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boot = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                aws_secret_access_key="bootstrap")
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        iam = boto3.client("iam", **boot)
        iam.create_user(UserName="researcher")
        policy = iam.create_policy(PolicyName="s3-all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        iam.attach_user_policy(UserName="researcher", PolicyArn=policy["Policy"]["Arn"])
        key = iam.create_access_key(UserName="researcher")["AccessKey"]
        boto3.client("s3", **boot).create_bucket(Bucket=BUCKET)
        # from here on every request must be signed by a known key with the right secret
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        yield {"endpoint": endpoint, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
        server.stop()


def _opts(s3, key=None, secret=None):
    return {"key": key or s3["key"], "secret": secret or s3["secret"],
            "client_kwargs": {"endpoint_url": s3["endpoint"], "region_name": "us-east-1"}}


@pytest.fixture(scope="module")
def s3_store(s3):
    """A 2-symbol x 35-day universe written to s3://bucket/universe (and the same locally, to compare)."""
    store = BarStore(f"s3://{BUCKET}/universe", _opts(s3))
    generate_universe(2, days=35, seed=3, store=store, progress=False)
    return store


@pytest.fixture(scope="module")
def local_twin(tmp_path_factory):
    store = BarStore(tmp_path_factory.mktemp("twin"))
    generate_universe(2, days=35, seed=3, store=store, progress=False)
    return store


def test_a_universe_round_trips_through_s3_like_a_local_store(s3_store, local_twin, monkeypatch):
    pd.testing.assert_frame_equal(s3_store.load_bars("U000USDT"), local_twin.load_bars("U000USDT"))
    args = (["U001USDT", "U000USDT"], "2024-01-30", "2024-02-02", ["timestamp", "symbol", "close"])
    pd.testing.assert_frame_equal(s3_store.load_bars(*args), local_twin.load_bars(*args))
    local = local_twin.summary()

    def no_footers(*a, **k):
        raise AssertionError("summary on S3 read a Parquet footer instead of _meta.json")

    monkeypatch.setattr(BarStore, "_footer_meta", no_footers)
    remote = s3_store.summary()
    pd.testing.assert_frame_equal(remote, local)  # same bytes, same metadata, from _meta.json on S3
    assert remote["rows"].sum() == 2 * 35 * 1440


def test_duckdb_reads_s3_offline_through_fsspec(s3_store, local_twin):
    sql = ("SELECT symbol, date_trunc('day', timestamp) AS day, last(close ORDER BY timestamp) AS close "
           "FROM bars GROUP BY ALL ORDER BY symbol, day")
    with s3_store.duckdb() as con:
        remote = con.sql(sql).df()
    pd.testing.assert_frame_equal(remote, local_twin.query(sql))
    streamed = sum(b.num_rows for b in s3_store.iter_batches(columns=["close"], batch_rows=20_000))
    assert streamed == 2 * 35 * 1440


def test_upsert_on_s3_merges_with_the_stored_partition(s3):
    store = BarStore(f"s3://{BUCKET}/upsert", _opts(s3))
    bars = generate_bars("BTCUSDT", n=300, seed=5)
    store.write_bars(bars.iloc[:200])
    newer = bars.iloc[150:].copy()
    newer["volume"] += 1.0
    store.write_bars(newer)
    got = store.load_bars("BTCUSDT")
    assert len(got) == 300 and (got["volume"].iloc[150:].to_numpy() == newer["volume"].to_numpy()).all()


def test_spark_store_env_points_everything_at_s3(s3, s3_store, monkeypatch):
    from spark_research.data.store import default_store, load_bars

    monkeypatch.setenv("SPARK_STORE", f"s3://{BUCKET}/universe")
    monkeypatch.setenv("SPARK_S3_ENDPOINT", s3["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert default_store().url == f"s3://{BUCKET}/universe"
    assert len(load_bars(["U000USDT"], "2024-02-01", columns=["close"])) == 4 * 1440


def test_wrong_credentials_are_a_clear_error_naming_the_bucket(s3):
    with pytest.raises(StoreAccessError, match=f"s3://{BUCKET}/x: access to bucket '{BUCKET}' denied.*credentials"):
        BarStore(f"s3://{BUCKET}/x", _opts(s3, key="AKIAWRONGWRONGWRONG0"))
    with pytest.raises(StoreAccessError, match=f"bucket '{BUCKET}' denied"):
        BarStore(f"s3://{BUCKET}/x", _opts(s3, secret="not-the-secret"))


def test_a_missing_bucket_is_a_clear_error_naming_it(s3):
    with pytest.raises(StoreAccessError, match="s3://no-such-bucket/store: bucket 'no-such-bucket' does not exist"):
        BarStore("s3://no-such-bucket/store", _opts(s3))


def test_an_s3_store_pickles_with_its_options(s3_store):
    clone = pickle.loads(pickle.dumps(s3_store))
    assert clone.url == s3_store.url and len(clone.load_bars("U001USDT", "2024-02-04")) == 1440


def test_kline_dumps_import_into_s3_and_resume(s3, tmp_path):
    from tests.data.test_import import kline_csv

    d = tmp_path / "dumps"
    d.mkdir()
    for month, seed in (("2024-01", 1), ("2024-02", 2)):
        bars = generate_bars("BTCUSDT", n=1440, seed=seed, start=f"{month}-01")
        with zipfile.ZipFile(d / f"BTCUSDT-1m-{month}.zip", "w") as zf:
            zf.writestr(f"BTCUSDT-1m-{month}.csv", kline_csv(bars))
    store = BarStore(f"s3://{BUCKET}/imported", _opts(s3))
    first = import_klines(d, store, workers=1, progress=False)
    assert first.ok and first.bars == 2 * 1440
    assert sorted(imported_files(store)["file"]) == ["BTCUSDT-1m-2024-01.zip", "BTCUSDT-1m-2024-02.zip"]
    second = import_klines(d, store, workers=1, progress=False)
    assert second.imported == [] and len(second.skipped) == 2
    assert store.summary()["rows"].iloc[0] == 2 * 1440
