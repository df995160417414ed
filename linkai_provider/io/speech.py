"""Where a recording has speech energy, where it is silent, and where a piece may end.

Two questions, two deliberately different thresholds (levels are dBFS of 20 ms frames):

* **Is there anything to hear?** (:func:`active_frames`, :func:`speech_spans`) decides what is not
  *sent*, so it errs towards sending. A frame is silent only when it is both under ``LOUD_DB``
  (-45 dBFS: a loud room, a fan, a noisy line or hold music are never silence) and within
  ``FLOOR_MARGIN_DB`` of the recording's own noise floor (its 10th percentile). Quiet speech next to
  digital silence rises far above that floor and is kept; speech buried in steady noise is above
  ``LOUD_DB`` and is kept. Only runs of at least ``SKIP_MIN_S`` are left out, less ``KEEP_S`` at
  each side, so every word keeps its edges and the recognizer hears a pause between turns.
* **Where may a piece end?** (:func:`cut_threshold`, :func:`find_cut`) looks for the pauses between
  sentences: a frame is quiet there when it is 30 dB under the speech level or within 6 dB of the
  noise floor, but always at least 12 dB under speech, so steady noise or music has no pause.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FLOOR_MARGIN_DB",
    "KEEP_S",
    "LOUD_DB",
    "SKIP_MIN_S",
    "active_frames",
    "cut_threshold",
    "find_cut",
    "speech_spans",
]

FRAMES_PER_S = 50
LOUD_DB = -45.0
FLOOR_MARGIN_DB = 12.0
FLOOR_PERCENTILE = 10.0
LOWEST_FLOOR_DB = -100.0
SKIP_MIN_S = 3.0  # silences at least this long are not sent...
KEEP_S = 0.5  # ...but for this much at either side
MIN_ACTIVE_S = 0.1  # an island with less energy than this is a click, not speech (or half a shorter file)

# Cut points (pauses between sentences)
MIN_PAUSE_S = 0.25
PREFERRED_PAUSE_S = 1.0
SILENCE_BELOW_SPEECH_DB = 30.0
ABSOLUTE_SILENCE_DB = -60.0
NOISE_MARGIN_DB = 6.0
MIN_CONTRAST_DB = 12.0

_MIN_RUN = round(MIN_PAUSE_S * FRAMES_PER_S)
_PREFERRED_RUN = round(PREFERRED_PAUSE_S * FRAMES_PER_S)


def silence_threshold(db: np.ndarray) -> float:
    """dBFS under which a frame of this recording (or channel) has no speech energy."""
    if db.size == 0:
        return LOUD_DB
    floor = max(float(np.percentile(db, FLOOR_PERCENTILE)), LOWEST_FLOOR_DB)
    return min(LOUD_DB, floor + FLOOR_MARGIN_DB)


def active_frames(db: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Frames with speech energy (or any sound worth sending)."""
    return db >= (silence_threshold(db) if threshold is None else threshold)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def speech_spans(
    active: np.ndarray,
    *,
    skip_s: float = SKIP_MIN_S,
    keep_s: float = KEEP_S,
    min_active_s: float = MIN_ACTIVE_S,
) -> list[tuple[int, int]]:
    """Spans of frames worth sending: everything but silences of at least ``skip_s`` (each keeps
    ``keep_s`` at its edges next to sound). Empty when nothing is worth sending."""
    n = active.size
    if n == 0:
        return []
    keep = round(keep_s * FRAMES_PER_S)
    starts, ends = _runs(~active)
    spans: list[tuple[int, int]] = []
    at = 0
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - s < skip_s * FRAMES_PER_S:
            continue
        cut_from = s + keep if s > 0 else 0
        cut_to = e - keep if e < n else n
        if cut_from > at:
            spans.append((at, cut_from))
        at = max(at, cut_to)
    if at < n:
        spans.append((at, n))
    # A click is not speech; but a recording shorter than that is judged by half of its frames.
    least = max(1, min(round(min_active_s * FRAMES_PER_S), -(-n // 2)))
    return [(s, e) for s, e in spans if int(active[s:e].sum()) >= least]


def cut_threshold(db: np.ndarray) -> float:
    """dBFS under which a frame counts as a pause (a place to end a piece)."""
    loud = db[db >= ABSOLUTE_SILENCE_DB]
    if loud.size == 0:
        return ABSOLUTE_SILENCE_DB
    speech = float(np.percentile(loud, 90))
    floor = float(np.percentile(db, 10))
    # A room's noise floor counts as a pause too; but a pause must be clearly quieter than speech,
    # so steady noise or music (floor close to the level) has none.
    quiet = max(speech - SILENCE_BELOW_SPEECH_DB, floor + NOISE_MARGIN_DB, ABSOLUTE_SILENCE_DB)
    return min(quiet, speech - MIN_CONTRAST_DB)


def find_cut(db: np.ndarray, limit: int, window: int, threshold: float) -> tuple[int, bool]:
    """Where to end a piece of at most ``limit`` frames: ``(frame index, found a pause)``.

    Searches ``db[limit - window : limit]`` for runs of at least ``MIN_PAUSE_S`` under
    ``threshold`` and returns the middle of the best one (runs of ``PREFERRED_PAUSE_S`` or more
    count alike; the latest wins); without one, the middle of the quietest ``MIN_PAUSE_S`` stretch
    of the window's last quarter.
    """
    lo = max(limit - window, 1)
    seg = db[lo:limit]
    starts, ends = _runs(seg < threshold)
    lengths = ends - starts
    usable = lengths >= _MIN_RUN
    if usable.any():
        score = np.where(usable, np.minimum(lengths, _PREFERRED_RUN), -1)
        best = len(score) - 1 - int(np.argmax(score[::-1]))  # latest of the longest
        return lo + int(starts[best] + ends[best]) // 2, True
    # No pause: the quietest point of the window's last quarter (a piece cut blind stays long).
    tail = seg[-max(seg.size // 4, _MIN_RUN) :]
    run = min(_MIN_RUN, tail.size)
    smooth = np.convolve(np.power(10.0, tail / 10.0), np.ones(run), mode="valid")
    best = smooth.size - 1 - int(np.argmin(smooth[::-1]))
    return limit - tail.size + best + run // 2, False
