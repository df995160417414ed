"""The seed's Python example, unchanged but for the URL and key, in a loop over the files.

This is the naive way a user would start: one ``requests.post`` per file, one after the other,
a new connection each time (no Session), the file opened as in the example.
Usage: ``python -m bench.seed_loop URL KEY LIST_FILE``; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import requests


def main() -> None:
    base, key, list_file = sys.argv[1:4]
    with open(list_file) as fh:
        paths = fh.read().split("\n")
    ok = failed = 0
    out = open(os.devnull, "w")  # noqa: SIM115 - the example prints each answer; we discard them
    started = time.perf_counter()
    for file_path in paths:
        # --- the seed's example, as published (kept verbatim: do not reformat) ---
        # fmt: off
        url = f"{base}/v1/audio/transcriptions"
        headers = {
            'Authorization': f'Bearer {key}'
        }
        files = {
            'file': open(file_path, 'rb')  # noqa: SIM115 - as published
        }
        res = requests.post(url, headers=headers, files=files)
        if res.status_code == 200:
            res_json = res.json()
            reply_text = res_json.get("text")
            print(f"text={reply_text}", file=out)
            ok += 1
        else:
            error = res.json()
            print(f"Request error, status code={error.get('code')}, error message={error.get('message')}", file=out)
            failed += 1
        # fmt: on
    wall = time.perf_counter() - started
    print(json.dumps({"wall_s": wall, "ok": ok, "failed": failed}))


if __name__ == "__main__":
    main()
