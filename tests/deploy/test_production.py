"""docs/production.md and docs/installation.md walked as a newcomer would, on this machine:

- the wheel is built from a checkout by the docs' line, and installed by the docs' air-gapped line in a
  network namespace that has no network at all (``unshare -n``), into a fresh virtualenv that sees the
  tested environment's packages but not the provider: so the pins resolve offline against exactly
  what the tests run, and the installed wheel (not the editable checkout) carries every file of the
  package and registers the provider;
- every install line takes the ``audio`` extra (without it every long recording is a failed row);
- the ports the docs give the components do not collide with each other or with Airflow's defaults.

The rest of production.md (its environment, ``airflow db migrate``, every component's start line with
its port, the pool, a trigger, the Asset events, a scheduled run at midnight) is run as written by the
real-stack test (``tests/stack``). The constraints URL is on GitHub, which tests cannot reach: its
section is checked for the Airflow version the tests run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.stack.stack import ADDRESSES, component_name, documented_env, snippet_commands, snippet_section

REPO = Path(__file__).resolve().parents[2]
SNIPPETS = REPO / "docs" / "snippets"
BIN = Path(sys.executable).parent
DIST = "airflow-provider-linkai"


def shell_words(text: str) -> list[list[str]]:
    import shlex

    joined = re.sub(r"\\\n\s*", " ", text)
    # the commands this module reads are one line each (multi-line quoted JSON elsewhere is left alone)
    lines = [line for line in joined.splitlines() if re.match(r"\s*(pip|docker|python|airflow)\b", line)]
    return [shlex.split(line, comments=True) for line in lines]


def requirements(words: list[str]) -> list[str]:
    """The requirement arguments of a ``pip install/download/wheel`` command (options dropped)."""
    out, skip = [], False
    for word in words[2:]:
        if skip:
            skip = False
        elif word in ("--find-links", "--constraint", "--dest", "--wheel-dir", "-w", "-d", "-c", "-f"):
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


def extras_bringing_audio() -> set[str]:
    """The provider's extras that install the ``audio`` extra, directly or through another extra."""
    meta = importlib.metadata.metadata(DIST)
    brings: dict[str, set[str]] = {extra: set() for extra in meta.get_all("Provides-Extra")}
    for line in importlib.metadata.requires(DIST) or []:
        req = Requirement(line)
        extra = re.search(r'extra == "([^"]+)"', str(req.marker or ""))
        if extra and req.name == DIST:
            brings[extra.group(1)] |= req.extras
    found = {"audio"}
    while True:
        more = {extra for extra, inner in brings.items() if inner & found} - found
        if not more:
            return found
        found |= more


def provider_extras(requirement: str) -> set[str] | None:
    """The extras of a requirement that installs this provider (by name, ``.``, or a checkout path)."""
    name, bracket, rest = requirement.partition("[")
    if name in (DIST, ".", "./") or name.endswith(("/linkai", ".whl")):
        return set(rest.rstrip("]").split(",")) if bracket else set()
    return None


def test_every_install_line_takes_audio_and_names_real_extras():
    extras = set(importlib.metadata.metadata(DIST).get_all("Provides-Extra"))
    with_audio = extras_bringing_audio()
    assert {"audio", "server", "test", "dev"} <= with_audio
    lines = []
    for path in [*SNIPPETS.glob("*.sh"), REPO / "Dockerfile"]:
        text = path.read_text()
        if path.name == "Dockerfile":
            text = "\n".join(line.removeprefix("RUN ") for line in text.splitlines() if "pip install" in line)
        for words in shell_words(text):
            if words[:2] in (["pip", "install"], ["pip", "download"]):
                lines += [(path.name, r, provider_extras(r)) for r in requirements(words)]
    provider_lines = [(name, r, found) for name, r, found in lines if found is not None]
    assert len(provider_lines) >= 8, provider_lines
    for name, requirement, found in provider_lines:
        assert found <= extras, (name, requirement)
        assert found & with_audio, f"{name}: {requirement} installs no audio (long recordings would fail)"
    # the pages' own code blocks too (server-light is for the machine that runs linkai-server alone)
    for page in (REPO / "docs").glob("*.md"):
        blocks = "\n".join(re.findall(r"```(?:bash|sh|console)\n(.*?)```", page.read_text(), re.S))
        for extras_text in re.findall(r"airflow-provider-linkai\[([a-z0-9,-]+)\]", blocks):
            if extras_text != "server-light":
                assert set(extras_text.split(",")) & with_audio, f"{page.name}: [{extras_text}]"


def test_install_commands_name_the_tested_airflow_and_the_providers_the_connections_need():
    from linkai_provider.io.storage import STORES
    from tests.deploy import compose

    args, stages, _ = compose.dockerfile_stages()
    assert "airflow" in {name for _, name in stages}
    commands = shell_words((SNIPPETS / "install.sh").read_text())
    others = []
    for words in commands:
        if words[:2] == ["pip", "install"]:
            others += [r for r in requirements(words) if provider_extras(r) is None]
    assert f"apache-airflow=={args['AIRFLOW_VERSION']}" in others
    # the providers that read `aws` and `google_cloud_platform` connections, as the error names them
    assert {r for r in others if r.startswith("apache-airflow-providers-")} == {s.provider for s in STORES[:2]}
    assert ["pip", "wheel", "--no-deps", "--wheel-dir", "dist", "."] in commands
    assert ["docker", "build", "--target", "airflow", "-t", "airflow-provider-linkai:local", "."] in commands


def test_constraints_and_air_gapped_lines_pin_what_the_stack_test_runs():
    section = snippet_section("constraints")
    assert f"\nAIRFLOW_VERSION={importlib.metadata.version('apache-airflow')}\n" in section
    url = "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
    assert f'CONSTRAINTS="{url}"' in section
    installs = [w for w in shell_words(section) if w[:2] == ["pip", "install"]]
    assert len(installs) == 2 and all(w[-2:] == ["--constraint", "${CONSTRAINTS}"] for w in installs)
    assert installs[1][2:4] == ["--find-links", "dist"]  # the wheel built from the checkout

    # air-gapped: what is downloaded is what is installed, and every pin is the test extra's own
    (download,) = [w for w in shell_words(snippet_section("download")) if w[:2] == ["pip", "download"]]
    (install,) = [w for w in shell_words(snippet_section("airgapped")) if w[:2] == ["pip", "install"]]
    assert install[2:5] == ["--no-index", "--find-links", "wheelhouse"]
    assert requirements(download) == requirements(install)
    test_extra = {Requirement(r).name: Requirement(r) for r in importlib.metadata.requires(DIST) or []
                  if 'extra == "test"' in r}  # fmt: skip
    for requirement in map(Requirement, requirements(install)):
        if requirement.name == DIST:
            continue
        installed = Version(importlib.metadata.version(requirement.name))
        assert requirement.specifier.contains(installed), (requirement, installed)
        if requirement.name != "apache-airflow":
            assert requirement.name in test_extra and str(requirement.specifier) == str(
                test_extra[requirement.name].specifier
            )
    # the wheel in wheelhouse/ is built by the wheel section's own command
    (build,) = [w for w in shell_words(snippet_section("wheel")) if w[:2] == ["pip", "wheel"]]
    assert [w for w in shell_words(snippet_section("download")) if w[:2] == ["pip", "wheel"]] == [
        ["wheelhouse" if w == "dist" else w for w in build]
    ]


def test_the_documented_ports_do_not_collide():
    """Each component's listening port, from its docs line, the docs' environment and Airflow's defaults."""
    from airflow.configuration import conf

    env = documented_env()
    ports: dict[str, int] = {}
    for line in snippet_commands("components") + snippet_commands("workers"):
        name = component_name(line)
        assignments = dict(w.split("=", 1) for w in line.split() if re.fullmatch(r"[A-Z_0-9]+=\S+", w))
        settings = {**env, **assignments}

        def port(section: str, key: str, settings: dict[str, str] = settings) -> int:
            return int(settings.get(f"AIRFLOW__{section.upper()}__{key.upper()}") or conf.get(section, key))

        if name == "api-server":
            ports[name] = port("api", "port")
        elif name == "triggerer":
            ports[name] = port("logging", "trigger_log_server_port")
        elif name == "scheduler":
            ports[name] = port("scheduler", "scheduler_health_check_server_port")
        elif "celery worker" in line:
            ports[name] = port("logging", "worker_log_server_port")
    assert {"api-server", "scheduler", "triggerer", "worker1", "worker2"} <= set(ports)
    assert len(set(ports.values())) == len(ports), ports
    assert ports["worker2"] == 8795 and ports["triggerer"] == 8794  # what production.md explains
    assert set(ADDRESSES) <= set(env)  # the stack test replaces these, and nothing else it needs


def checkout_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone would have them (tracked, plus new files not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def overlay_of_tested_packages(folder: Path) -> Path:
    """This environment's site-packages, minus the provider itself, as symlinks."""
    site = Path(sysconfig.get_paths()["purelib"])
    folder.mkdir()
    hidden = re.compile(r"(airflow_provider_linkai|__editable__.*linkai|linkai_provider)([-_.].*)?$")
    for entry in site.iterdir():
        if not hidden.match(entry.name):
            (folder / entry.name).symlink_to(entry)
    return folder


def bash(script: str, cwd: Path, path: str, *, offline: bool = False) -> subprocess.CompletedProcess:
    argv = ["bash", "-euo", "pipefail", "-c", script]
    if offline:
        argv = ["unshare", "--net", "--", *argv]  # a network namespace with nothing in it, not even loopback
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_from_a_checkout_installs_air_gapped_with_every_file(tmp_path):
    checkout = checkout_copy(tmp_path / "airflow-provider-linkai")
    built = bash(snippet_section("wheel"), checkout, f"{BIN}:{os.environ['PATH']}")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (wheel,) = (checkout / "dist").glob("airflow_provider_linkai-*-py3-none-any.whl")
    (checkout / "wheelhouse").mkdir()
    shutil.copy(wheel, checkout / "wheelhouse")  # what the download section's `pip wheel` line puts there

    venv = tmp_path / "venv"
    # without ensurepip's copy of pip (10 s on a busy machine): the tested pip, through the overlay below
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    (venv / "bin" / "pip").write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"
    )
    (venv / "bin" / "pip").chmod(0o755)
    overlay = overlay_of_tested_packages(tmp_path / "tested-packages")
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "zz_tested_packages.pth").write_text(f"import site; site.addsitedir({str(overlay)!r})\n")

    installed = bash(snippet_section("airgapped"), checkout, f"{venv}/bin:/usr/bin:/bin", offline=True)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert f"Successfully installed {DIST}" in installed.stdout, installed.stdout[-3000:]

    probe = (
        "import importlib.metadata as md, json, linkai_provider\n"
        "dist = md.distribution('airflow-provider-linkai')\n"
        "(ep,) = [e for e in md.entry_points(group='apache_airflow_provider') if e.dist.name == dist.name]\n"
        "direct = dist.read_text('direct_url.json') or ''\n"
        "print(json.dumps({'module': linkai_provider.__file__, 'files': [str(f) for f in dist.files],"
        " 'package': ep.load()()['package-name'], 'editable': 'editable' in direct}))\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,  # not the repository: `python -c` puts the working directory first on sys.path
        env={"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["module"].startswith(str(venv_site)) and not got["editable"]
    assert got["package"] == DIST
    shipped = {f for f in got["files"] if f.startswith("linkai_provider/") and "__pycache__" not in f}
    tracked = {str(p.relative_to(checkout)) for p in (checkout / "linkai_provider").rglob("*") if p.is_file()}
    assert tracked - shipped == set(), "files of the package missing from the wheel"
    assert "linkai_provider/py.typed" in shipped and "linkai_provider/hostname.py" in shipped
