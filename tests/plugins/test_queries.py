"""The small parts of a search answer: where a phrase was said, the snippet around it, the hit cache."""

from __future__ import annotations

import pyarrow as pa

from linkai_provider.plugins.queries import HitCache, locate, snippet

SEGMENTS = [
    {"start_s": 0.0, "end_s": 60.0, "text": "hello thank you for calling", "channel": None},
    {"start_s": 60.0, "end_s": 121.5, "text": "i would like a refund please", "channel": None},
]
TEXT = " ".join(s["text"] for s in SEGMENTS)


def test_the_segment_that_holds_the_phrase_gives_the_time():
    assert locate("Refund Please", TEXT, SEGMENTS) | {"snippet": ""} == {
        "start_s": 60.0, "end_s": 121.5, "channel": None, "snippet": "",
    }  # fmt: skip


def test_a_phrase_said_across_two_pieces_gets_the_piece_it_starts_in():
    where = locate("for calling i would", TEXT, SEGMENTS)
    assert (where["start_s"], where["end_s"]) == (0.0, 60.0)
    assert "for calling i would" in where["snippet"]


def test_rows_without_segments_still_get_a_snippet():
    assert locate("refund", TEXT, []) == {"start_s": None, "end_s": None, "channel": None, "snippet": TEXT}


def test_snippets_are_cut_at_spaces_around_the_match():
    text = (
        " ".join(f"word{i}" for i in range(200))
        + " the refund we talked about "
        + " ".join("x" * 5 for _ in range(200))
    )
    cut = snippet(text, text.index("refund"), len("refund"), width=60)
    assert cut.startswith("…") and cut.endswith("…") and "refund" in cut
    inner = cut.strip("…")
    assert len(inner) <= 60 and text.find(inner) >= 0
    assert text[text.find(inner) - 1] == " " and text[text.find(inner) + len(inner)] == " "  # whole words
    assert snippet("short text", 0, 5) == "short text"


def test_the_hit_cache_keeps_the_recent_searches_within_bounds():
    cache = HitCache(entries=2, max_rids=10)
    cache.put(("v1", "a"), pa.array([1, 2, 3]))
    cache.put(("v1", "b"), pa.array([4, 5]))
    assert cache.get(("v1", "a")).to_pylist() == [1, 2, 3]  # now the most recent
    cache.put(("v1", "c"), pa.array([6]))
    assert cache.get(("v1", "b")) is None and cache.get(("v1", "a")) is not None
    cache.put(("v1", "big"), pa.array(range(9)))  # 9 + 1 + 3 > 10: the oldest go
    assert cache.get(("v1", "big")) is not None and cache.get(("v1", "a")) is None
    assert cache.get(("v2", "big")) is None  # another version of the data is another key
