"""The API documentation's curl and Python examples, unchanged but for URL, key and path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest

# From reference/linkai-speech-recognition-api.txt, "2. Python Code"; the three placeholders are
# filled in by str.replace, nothing else changes. (The reference text lost the indentation of the
# if/else bodies; it is restored, as Python needs it.)
PYTHON_EXAMPLE = textwrap.dedent("""\
    import requests

    file_path = '/path/to/file/audio.mp3' # Replace with the path to your audio file

    url = 'https://api.linkai.cloud/v1/audio/transcriptions'
    headers = {
    'Authorization': f'Bearer YOUR_API_KEY'
    }
    files = {
    'file': open(file_path, 'rb')
    }
    res = requests.post(url, headers=headers, files=files)
    if res.status_code == 200:
        res_json = res.json()
        reply_text = res_json.get("text")
        print(f"text={reply_text}")
    else:
        error = res.json()
        print(f"Request error, status code={error.get('code')}, error message={error.get('message')}")
    """)

# "1. CURL Request", likewise.
CURL_EXAMPLE = [
    "curl", "https://api.linkai.cloud/v1/audio/transcriptions",
    "-H", "Authorization: Bearer YOUR_API_KEY",
    "-H", "Content-Type: multipart/form-data",
    "-F", "file=@/path/to/file/audio.mp3",
]


def _fill(text: str, server, path) -> str:
    return (text.replace("https://api.linkai.cloud", server.url)
            .replace("YOUR_API_KEY", server.api_key)
            .replace("/path/to/file/audio.mp3", str(path)))


def run_python_example(server, path) -> str:
    result = subprocess.run([sys.executable, "-c", _fill(PYTHON_EXAMPLE, server, path)],
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip()


def test_python_example_with_digest(linkai_server, clip) -> None:
    path = clip("the python example", "mp3", name="audio.mp3")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert run_python_example(linkai_server, path) == f"text=sha256:{digest} bytes:{path.stat().st_size}"


def test_python_example_error_branch(linkai_server, tmp_path) -> None:
    path = tmp_path / "audio.mp3"
    path.write_text("not audio")
    out = run_python_example(linkai_server, path)
    assert out.startswith("Request error, status code=400, error message=Invalid request format")


def test_curl_example_with_digest(linkai_server, clip) -> None:
    path = clip("the curl example", "mp3", name="audio-curl.mp3")
    result = subprocess.run([_fill(arg, linkai_server, path) for arg in CURL_EXAMPLE],
                            capture_output=True, text=True, timeout=60, check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads(result.stdout) == {"text": f"sha256:{digest} bytes:{path.stat().st_size}"}


@pytest.mark.whisper
def test_both_examples_with_real_recognition(whisper_server, clip) -> None:
    path = clip("Hello, I need some help with my account.", "mp3", name="audio-whisper.mp3")
    assert run_python_example(whisper_server, path) == "text=Hello, I need some help with my account."
    result = subprocess.run([_fill(arg, whisper_server, path) for arg in CURL_EXAMPLE],
                            capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout) == {"text": "Hello, I need some help with my account."}
