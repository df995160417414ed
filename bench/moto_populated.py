"""moto's S3 server on 127.0.0.1 with N objects put straight into its backend (seconds instead of the
minutes N PUTs take). Usage: ``python -m bench.moto_populated PORT N``; prints ``ready`` when listening."""

from __future__ import annotations

import sys
import time


def main() -> None:
    port, n = int(sys.argv[1]), int(sys.argv[2])
    from moto.backends import get_backend
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = get_backend("s3")["123456789012"]["aws"]
    backend.create_bucket("bench", "us-east-1")
    for i in range(n):  # a day folder each, distinct content (distinct ETags, as real recordings have)
        body = b"RIFF" + i.to_bytes(8, "big") + bytes(52)
        backend.put_object("bench", f"calls/2026-11-{i % 28 + 1:02d}/agent-{i % 97:02d}/call-{i:07d}.wav", body)
    print("ready", flush=True)
    time.sleep(10**9)


if __name__ == "__main__":
    main()
