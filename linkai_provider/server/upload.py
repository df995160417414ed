"""Stream a multipart upload to disk, hashing it and enforcing the size limit as it arrives.

Starlette's ``request.form()`` has no total size limit, so a 2 GB upload would be accepted to
the end before anyone could refuse it. :func:`receive_upload` drives ``python-multipart``
directly instead: the ``file`` part goes to a temporary file in batches of about 1 MiB
(written and hashed in a worker thread so the event loop stays free), the first 64 KiB are
kept for content sniffing, and the upload is refused with 413 the moment the file crosses
``max_file_bytes``. Memory use is bounded by the batch size whatever the upload size.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from linkai_provider.server.errors import ApiError

__all__ = ["FORM_OVERHEAD_BYTES", "TooLargeError", "Upload", "human_bytes", "receive_upload", "too_large"]

#: Allowance for multipart framing and small fields on top of the file size limit.
FORM_OVERHEAD_BYTES = 1024 * 1024
_FIELD_MAX_BYTES = 64 * 1024
_MAX_FIELDS = 64
_HEAD_BYTES = 64 * 1024
_FLUSH_BYTES = 1024 * 1024


@dataclass
class Upload:
    """What arrived: the spooled ``file`` part (if any) and the text fields."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    content_type: str | None = None
    size: int = 0
    sha256: str = ""
    head: bytes = b""
    body_bytes: int = 0

    @property
    def has_file(self) -> bool:
        return self.path is not None

    def cleanup(self) -> None:
        """Delete the spooled file."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def human_bytes(n: int) -> str:
    """``104857600`` -> ``'100 MiB'``: limits in messages read better in binary units."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" or value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover - loop always returns


class TooLargeError(ApiError):
    """The upload is over ``--max-upload-bytes`` (answered in the ``--too-large-style``)."""


def too_large(limit: int, received: int) -> TooLargeError:
    """The 413 answer; its message states the limit so users know what to change.

    :param received: the body bytes read so far (or the ``Content-Length`` declared), which
        OpenAI's wording of the same answer states too.
    """
    return TooLargeError(
        413,
        f"File too large: the upload limit is {limit} bytes ({human_bytes(limit)})",
        openai_message=f"Maximum content size limit ({limit}) exceeded ({received} bytes read)",
    )


class _Collector:
    """python-multipart callbacks; parsing is synchronous, disk writes are batched by the caller."""

    def __init__(self, upload: Upload, max_file_bytes: int, spool_dir: Path | None):
        self.upload = upload
        self.max_file_bytes = max_file_bytes
        self.spool_dir = spool_dir
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.ended = False
        self._hash = hashlib.sha256()
        self._fh: BinaryIO | None = None
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: str | None = None  # "file", "field:<name>" or "ignore"
        self._field_buf = bytearray()
        self._fields_seen = 0

    # -- python-multipart callbacks -------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers = {}
        self._part = None
        self._field_buf = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            if self.upload.path is not None:
                raise ApiError(400, "Invalid request format: more than one multipart field 'file'")
            self._open_spool()
            filename = options.get(b"filename")
            self.upload.filename = filename.decode("utf-8", "replace") if filename is not None else None
            ctype = self._headers.get(b"content-type")
            self.upload.content_type = ctype.decode("latin-1") if ctype else None
            self._part = "file"
        elif b"filename" in options:
            self._part = "ignore"  # another file part: counted against the limit, not kept
        else:
            self._fields_seen += 1
            if self._fields_seen > _MAX_FIELDS:
                raise ApiError(400, f"Invalid request format: more than {_MAX_FIELDS} form fields")
            self._part = f"field:{name}"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part == "file":
            self.upload.size += len(chunk)
            if self.upload.size > self.max_file_bytes:
                raise too_large(self.max_file_bytes, self.upload.body_bytes)
            if len(self.upload.head) < _HEAD_BYTES:
                self.upload.head += chunk[: _HEAD_BYTES - len(self.upload.head)]
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
        elif self._part is not None and self._part.startswith("field:"):
            self._field_buf += chunk
            if len(self._field_buf) > _FIELD_MAX_BYTES:
                raise ApiError(400, f"Invalid request format: form field larger than {_FIELD_MAX_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._part is not None and self._part.startswith("field:"):
            self.upload.fields[self._part[6:]] = self._field_buf.decode("utf-8", "replace")
        self._part = None

    def on_end(self) -> None:
        self.ended = True

    # -- spooling (called from a worker thread) ---------------------------------------------
    def _open_spool(self) -> None:
        fd, name = tempfile.mkstemp(prefix="linkai-upload-", suffix=".bin", dir=self.spool_dir)
        self._fh = os.fdopen(fd, "wb")
        self.upload.path = Path(name)

    def flush(self, chunks: list[bytes]) -> None:
        assert self._fh is not None  # opened when the file part began
        for chunk in chunks:
            self._hash.update(chunk)
            self._fh.write(chunk)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.upload.sha256 = self._hash.hexdigest()


def _boundary(content_type: str | None) -> bytes:
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(
            400,
            "Invalid request format: Content-Type must be multipart/form-data with a boundary "
            f"(got {content_type or 'none'!r})",
        )
    return params[b"boundary"]


async def receive_upload(
    stream: AsyncIterator[bytes],
    content_type: str | None,
    *,
    max_file_bytes: int,
    spool_dir: Path | None = None,
) -> Upload:
    """Read a multipart body from ``stream``; the caller must ``cleanup()`` the result.

    :raises ApiError: 400 for a malformed body, 413 as soon as the file exceeds the limit.
    """
    boundary = _boundary(content_type)
    upload = Upload()
    collector = _Collector(upload, max_file_bytes, spool_dir)
    callbacks = {name: getattr(collector, name) for name in dir(collector) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    max_body = max_file_bytes + FORM_OVERHEAD_BYTES
    try:
        async for chunk in stream:
            upload.body_bytes += len(chunk)
            if upload.body_bytes > max_body:
                raise too_large(max_file_bytes, upload.body_bytes)
            parser.write(chunk)
            if collector.pending_bytes >= _FLUSH_BYTES:
                await _flush(collector)
        parser.finalize()
        await _flush(collector)
        await asyncio.to_thread(collector.close)
    except FormParserError as exc:
        collector.close()
        upload.cleanup()
        raise ApiError(400, f"Invalid request format: malformed multipart body ({exc})") from exc
    except BaseException:
        collector.close()
        upload.cleanup()
        raise
    if not collector.ended:
        upload.cleanup()
        raise ApiError(400, "Invalid request format: the multipart body ended before its closing boundary")
    return upload


async def _flush(collector: _Collector) -> None:
    chunks, collector.pending, collector.pending_bytes = collector.pending, [], 0
    if chunks:
        await asyncio.to_thread(collector.flush, chunks)
