"""Shards without file lists (issue 16 items 2 and 4): slices by hash and by manifest are disjoint,
complete and balanced; a shard reads only its own row group of the manifest; S3 is listed page by
page. Real local disk and real S3 (moto server); the LIST and GET calls are counted through botocore's
events."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from linkai_provider.io.sources import SourceNotFoundError, list_audio
from linkai_provider.operators.transcribe import TranscribeAudioOperator
from linkai_provider.sharding import (
    MANIFESTS,
    ManifestError,
    Shard,
    ShardArgs,
    manifest_url,
    read_shard,
    remove_manifest,
    shard_of,
    write_manifest,
)


def test_hash_slices_are_stable_disjoint_complete_and_balanced():
    uris = [f"s3://calls/2026-11-{i % 28 + 1:02d}/agent-{i % 37}/call-{i:07d}.wav" for i in range(20_000)]
    assert shard_of(uris[0], 16) == shard_of(uris[0], 16) == 0  # the same in every process and release
    assert [shard_of(u, 7) for u in uris[:8]] == [6, 3, 2, 3, 1, 0, 6, 1]  # pinned: a change would reshuffle shards
    counts = Counter(shard_of(u, 16) for u in uris)
    assert sorted(counts) == list(range(16))
    mean = statistics.mean(counts.values())
    assert all(abs(c - mean) <= 0.10 * mean for c in counts.values()), counts
    slices = [{u for u in uris if Shard(i, 16).holds(u)} for i in range(16)]
    assert sum(map(len, slices)) == len(set().union(*slices)) == len(uris)


@pytest.mark.parametrize(
    ("index", "count", "manifest", "error"),
    [
        (0, None, None, "needs shard_count"),
        (None, 4, None, "needs shard_index"),
        (4, 4, None, "< shard_count"),
        (-1, 4, None, ">= 0"),
        (0, 0, None, "between 1 and"),
        ("two", 4, None, "must be an integer"),
        (None, None, "s3://b/m.manifest", "manifest needs shard_index"),
    ],
)
def test_bad_shard_arguments_fail_when_the_dag_is_parsed(index, count, manifest, error):
    with pytest.raises(ValueError, match=error):
        TranscribeAudioOperator(
            task_id="t", source="/in", destination="/out", shard_index=index, shard_count=count, manifest=manifest
        )
    with pytest.raises(ValueError, match=error):
        ShardArgs.parse(index, count, manifest)
    # templated values are checked once rendered
    TranscribeAudioOperator(task_id="t", source="/in", destination="/out", shard_index="{{ x }}", shard_count=count)
    assert ShardArgs.parse("3", " 4 ", None) == ShardArgs(3, 4, None)


def _tree(root, audio: int, other: int) -> set[str]:
    """``audio`` tiny WAV-named files and ``other`` text files over nested day folders."""
    uris = set()
    for i in range(audio + other):
        folder = root / f"2026-11-{i % 3 + 1:02d}" / ("nested" if i % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"call-{i:05d}.wav" if i < audio else f"note-{i:05d}.txt")
        path.write_bytes(b"RIFF" + i.to_bytes(4, "big"))
        uris.add(f"file://{path}")
    return uris


def test_manifest_shards_are_disjoint_complete_and_within_one_file(tmp_path):
    uris = _tree(tmp_path / "audio", audio=997, other=13)
    root = f"file://{tmp_path}/transcripts"
    url = manifest_url(root, "linkai_sharded_transcription", "manual__2026-11-20T00:00:00+00:00")
    assert f"/transcripts/{MANIFESTS}/" in url and not url.endswith(".parquet")  # hidden from dataset readers
    # overlapping sources list the same files twice: each is in the manifest once
    summary = write_manifest([str(tmp_path / "audio"), f"file://{tmp_path}/audio/2026-11-01"], url, 16)
    assert (summary.files_found, summary.audio_files, summary.unsupported, summary.shards) == (1010, 997, 13, 16)
    assert (summary.smallest_shard, summary.largest_shard) == (62, 63)
    listings = [read_shard(url, i) for i in range(16)]
    audio = [f.uri for listing in listings for f in listing.files]
    other = [u for listing in listings for u in listing.unsupported]
    assert len(audio) == len(set(audio)) == 997 and len(other) == 13
    assert set(audio) | set(other) == uris
    assert {listing.shard for listing in listings} == {f"{i}/16" for i in range(16)}
    first = listings[0].files[0]
    assert first.path == first.uri.removeprefix("file://") and first.fs.exists(first.path)
    # the same file in one shard of the listing by hash as well
    by_hash = list_audio(str(tmp_path / "audio"), keep=Shard(3, 16).holds)
    assert {f.uri for f in by_hash.files} == {u for u in audio if shard_of(u, 16) == 3}

    with pytest.raises(ManifestError, match="has 16 shard"):
        read_shard(url, 0, shard_count=8)
    with pytest.raises(ValueError, match="< shard_count"):
        read_shard(url, 16)
    assert remove_manifest(url) and not remove_manifest(url)
    with pytest.raises(ManifestError, match="does not exist"):
        read_shard(url, 0)
    (tmp_path / "junk.manifest").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a LinkAI manifest"):
        read_shard(str(tmp_path / "junk.manifest"), 0)


def test_fewer_audio_files_than_shards_makes_fewer_shards(tmp_path):
    _tree(tmp_path / "audio", audio=3, other=2)
    summary = write_manifest(str(tmp_path / "audio"), f"{tmp_path}/m.manifest", 8)
    assert (summary.shards, summary.smallest_shard, summary.largest_shard) == (3, 1, 1)
    assert sum(len(read_shard(f"{tmp_path}/m.manifest", i).unsupported) for i in range(3)) == 2
    with pytest.raises(SourceNotFoundError):
        write_manifest(str(tmp_path / "nowhere"), f"{tmp_path}/n.manifest", 8)


@pytest.fixture
def s3_calls(moto_endpoint, s3fs_factory, request):
    """2,500 objects under one prefix, put straight into the moto server's backend (seconds, not minutes)."""
    from moto.backends import get_backend

    backend = get_backend("s3")["123456789012"]["aws"]
    bucket = f"shards-{request.node.name.replace('_', '-')[5:40].strip('-')}"
    backend.create_bucket(bucket, "us-east-1")
    for i in range(2_500):
        name = f"calls/2026-11-{i % 3 + 1:02d}/call-{i:05d}." + ("wav" if i % 50 else "txt")
        backend.put_object(bucket, name, b"RIFF" + i.to_bytes(4, "big"))
    backend.put_object(bucket, "calls/2026-11-01/", b"")  # a folder placeholder, not a file
    fs = s3fs_factory()
    calls: Counter[str] = Counter()
    fs.s3.meta.events.register("before-call.s3", lambda event_name, **kw: calls.update([event_name.split(".")[-1]]))
    return fs, bucket, calls


def _on(fs):
    """Resolve every URL to the moto-backed filesystem (as a connection would)."""
    from unittest import mock

    return mock.patch("linkai_provider.io.sources.resolve", lambda url, conn=None: (fs, fs._strip_protocol(url)))


def test_s3_is_listed_page_by_page_without_the_listing_cache(s3_calls):
    fs, bucket, calls = s3_calls
    with _on(fs):
        listing = list_audio(f"s3://{bucket}/calls/")
    assert (len(listing.files), len(listing.unsupported)) == (2_450, 50)
    assert calls["ListObjectsV2"] <= 4, calls  # 3 pages of 1,000 keys, and the probe of what the source is
    assert not fs.dircache  # s3fs.find would have cached every key's dict
    assert listing.files[0].fingerprint.startswith("etag:") and listing.files[0].size == 8
    with pytest.raises(AttributeError):
        listing.files[0].__dict__  # noqa: B018 - slots: no per-file dict


def test_a_shard_reads_its_row_group_not_the_listing(s3_calls):
    fs, bucket, calls = s3_calls
    url = f"s3://{bucket}/transcripts/{MANIFESTS}/run.manifest"
    with _on(fs), pytest.MonkeyPatch.context() as mp:
        mp.setattr("linkai_provider.sharding.resolve", lambda u, conn=None: (fs, fs._strip_protocol(u)))
        summary = write_manifest(f"s3://{bucket}/calls/", url, 4)
        assert calls["ListObjectsV2"] <= 4 and calls["PutObject"] == 1, calls  # 3 pages + what the source is
        calls.clear()
        listings = [read_shard(url, i) for i in range(4)]
    assert calls["ListObjectsV2"] == 0 and calls["GetObject"] <= 4 * 3  # footer and row group, ranges only
    assert sorted(len(x.files) for x in listings) == [612, 612, 613, 613] and summary.bytes < 64_000
    assert all(f.fs is fs and f.path.startswith(f"{bucket}/calls/") for f in listings[0].files)
