"""The documentation site: it builds with `mkdocs build --strict`, every page is in the nav, code
blocks come from tested snippet files, and the reference tables agree with the code they describe."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# pages written by other people, whose code blocks are theirs to source
OWN_CODE_BLOCKS_EXEMPT = {"dags.md", "server.md", "performance.md"}


def page(name: str) -> str:
    return (DOCS / name).read_text()


def table(text: str, header_starts: str) -> list[list[str]]:
    """Rows of the first Markdown table whose header line starts with ``header_starts``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_starts))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
    return rows


def code(cell: str) -> list[str]:
    """The `code` spans of a table cell."""
    return re.findall(r"`([^`]*)`", cell)


# -- the build ----------------------------------------------------------------------------------------
def test_site_builds_strict_without_warnings(tmp_path):
    # the [docs] extra, part of [dev]: a missing tool is an install problem, never a skip
    import material  # noqa: F401
    import mkdocs  # noqa: F401
    import mkdocstrings_handlers.python  # noqa: F401

    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "WARNING" not in output, output
    site = tmp_path / "site"
    # snippets are rendered into pages, not published as files
    assert not (site / "snippets").exists()
    querying = (site / "querying" / "index.html").read_text()
    assert "QUALIFY row_number() OVER" in querying and "--8&lt;--" not in querying
    # the API reference is generated from the docstrings
    hook_ref = (site / "reference" / "hook" / "index.html").read_text()
    assert "Check URL and key without spending credits" in hook_ref
    assert "PartialBatchError" in (site / "reference" / "exceptions" / "index.html").read_text()


def nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "snippets" not in p.parts)
    assert sorted(listed) == pages, "add new pages to mkdocs.yml's nav (and nothing that does not exist)"


def test_code_blocks_are_included_snippets():
    """Code in the pages is never typed into Markdown: each block includes a tested file."""
    fence = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.M | re.S)
    for path in sorted(DOCS.glob("*.md")):
        if path.name in OWN_CODE_BLOCKS_EXEMPT:
            continue
        for _, lang, body in fence.findall(path.read_text()):
            if lang == "text":  # folder trees and diagrams
                continue
            lines = [line.strip() for line in body.strip().splitlines()]
            assert len(lines) == 1 and lines[0].startswith('--8<-- "'), f"{path.name}: inline {lang} block: {body!r}"


def test_every_snippet_is_included_somewhere():
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    for snippet in sorted((DOCS / "snippets").iterdir()):
        assert f'--8<-- "docs/snippets/{snippet.name}' in text, f"{snippet.name} is not used by any page"


# -- tables that describe code ---------------------------------------------------------------------------
def test_schema_table_matches_dataset_schema():
    from linkai_provider.dataset import SCHEMA

    rows = table(page("dataset.md"), "| column | type |")
    assert [code(r[0])[0] for r in rows] == SCHEMA.names
    words = {"string": "string", "int64": "int64", "int32": "int32", "double": "float64"}
    for row, field in zip(rows, SCHEMA, strict=True):
        kind = str(field.type)
        expected = words.get(kind) or ("timestamp" if kind.startswith("timestamp") else kind.split("<item: ")[0])
        if kind.startswith("list<item: struct"):
            expected = "list<struct"
        elif kind.startswith("list<item: string"):
            expected = "list<string>"
        assert row[1].startswith(expected), (field.name, row[1])
        assert ("not null" in row[1]) == (not field.nullable), field.name


def test_error_table_matches_the_exception_tree():
    from linkai_provider import exceptions as exc

    branches = {"transient": exc.LinkAITransientError, "per-file": exc.LinkAIFileError,
                "batch-fatal": exc.LinkAIFatalError}  # fmt: skip
    documented = set()
    for row in table(page("errors.md"), "| status | class |"):
        statuses = [int(s) for s in re.findall(r"\d{3}", row[0])]
        cls = getattr(exc, code(row[1])[0])
        documented.add(cls.__name__)
        for status in statuses:
            assert exc.error_for_status(status) is cls, (status, cls)
        assert issubclass(cls, branches[row[2]]), (cls, row[2])
    assert exc.error_for_status(418) is exc.InvalidRequestError and exc.error_for_status(599) is exc.ServerError
    for row in table(page("errors.md"), "| class | branch | when |"):
        cls = getattr(exc, code(row[0])[0])
        documented.add(cls.__name__)
        if row[1] in branches:
            assert issubclass(cls, branches[row[1]]), cls
    bases = {"LinkAIError", "LinkAIFatalError", "LinkAIFileError", "LinkAITransientError", "error_for_status"}
    assert documented == set(exc.__all__) - bases


def test_retry_numbers_match_the_policy():
    from linkai_provider._api import RetryPolicy
    from linkai_provider.hooks.linkai import CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT

    text = page("errors.md")
    policy = RetryPolicy()
    assert f"min({policy.max_backoff:g} s, {policy.initial_backoff:g} s × 2^(n-1))" in text
    assert f"capped at {policy.max_retry_after:g} s" in text
    assert f"default {DEFAULT_MAX_RETRIES}" in text
    extras = {code(r[0])[0]: r for r in table(page("connection.md"), "| extra | default |")}
    assert code(extras["timeout"][1]) == [f"{DEFAULT_TIMEOUT:g}"]
    assert code(extras["max_retries"][1]) == [str(DEFAULT_MAX_RETRIES)]
    assert f"connect timeout is {CONNECT_TIMEOUT:g} s" in page("connection.md")


def test_connection_extras_match_the_provider_form():
    from linkai_provider import get_provider_info

    extras = [code(r[0])[0] for r in table(page("connection.md"), "| extra | default |")]
    assert extras == list(get_provider_info()["connection-types"][0]["conn-fields"])


def test_base_url_examples_are_what_the_hook_does():
    from linkai_provider.hooks.linkai import LinkAIConfig, normalize_base_url

    rows = table(page("connection.md"), "| host | port | endpoint |")
    assert len(rows) >= 8
    for host_cell, port_cell, endpoint_cell in rows:
        host = code(host_cell)[0] if code(host_cell) else ""
        port = int(port_cell.strip("`")) if port_cell else None
        base = normalize_base_url(host, port)
        endpoint = LinkAIConfig("c", base, "k", 1.0, 0, None, True, {}).endpoint
        assert [endpoint] == code(endpoint_cell), (host, port)


def test_operator_arguments_table_matches_the_signature():
    from linkai_provider.operators.transcribe import TranscribeAudioOperator

    params = [p for p in inspect.signature(TranscribeAudioOperator.__init__).parameters.values()
              if p.name not in ("self", "kwargs")]  # fmt: skip
    rows = table(page("operator.md"), "| argument | default | templated |")
    assert [code(r[0])[0] for r in rows] == [p.name for p in params]
    for row, param in zip(rows, params, strict=True):
        if param.default is inspect.Parameter.empty:
            assert row[1] == "required", param.name
        else:
            assert ast.literal_eval(code(row[1])[0]) == param.default, (param.name, row[1])
        assert (row[2] == "yes") == (param.name in TranscribeAudioOperator.template_fields), param.name


def test_xcom_summary_table_matches_the_summary():
    from linkai_provider.batch import run_summary
    from linkai_provider.io.sources import Listing
    from linkai_provider.pipeline import BatchResult
    from linkai_provider.planning import Plan, dry_run_report, summarize

    plan = Plan(Listing([], []), [])
    summary = run_summary(plan, BatchResult(total=0), "memory:///x", None)
    keys = [code(r[0])[0] for r in table(page("operator.md"), "| key | meaning |")]
    assert keys == list(summary)
    dry = summarize(
        plan,
        None,
        "memory:///x",
        dry_run=True,
        **dry_run_report(plan, max_upload_bytes=1, max_chunk_seconds=1, split=True),
    )
    dry_keys = [code(r[0])[0] for r in table(page("operator.md"), "| dry-run key | meaning |")]
    assert dry_keys == [key for key in dry if key not in summary]


def test_asset_examples_are_what_transcript_asset_returns():
    from linkai_provider.operators.transcribe import transcript_asset

    for destination, uri in table(page("operator.md"), "| destination | Asset URI |"):
        assert transcript_asset(code(destination)[0]).uri == code(uri)[0]


def test_extras_table_matches_pyproject():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    documented = [code(r[0])[0] for r in table(page("installation.md"), "| extra | installs |")]
    assert documented == list(extras)


def test_compose_page_names_real_settings():
    from tests.deploy import compose

    env = compose.environment(compose.load({})["services"]["airflow-worker"])
    settings = [code(r[0]) for r in table(page("docker-compose.md"), "| setting | value |")]
    for names in settings:
        for name in names:
            assert name in env, f"docs/docker-compose.md names {name}, which the stack does not set"
    for name in re.findall(r"`((?:LINKAI|AIRFLOW)_[A-Z_]+)`", page("docker-compose.md")):
        assert name in env or name in compose.env_file(), name
