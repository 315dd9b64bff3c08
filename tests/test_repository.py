"""What a reader or contributor relies on besides the code: licence, citation, hooks, clean
source notebooks."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_source_notebooks_carry_no_outputs():
    """The same check as the pre-commit hook: nbstripout would change nothing."""
    nbstripout = Path(sys.executable).parent / "nbstripout"
    out = subprocess.run(
        [str(nbstripout), "--keep-id", "--verify", *map(str, NOTEBOOKS)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_pre_commit_runs_ruff_and_nbstripout():
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    for entry in ("ruff check --fix", "ruff format", "nbstripout --keep-id"):
        assert f"entry: .venv/bin/{entry}\n" in config


def test_licence_is_mit():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_citation_file_is_valid_and_cites_the_paper():
    """cffconvert validates against the CFF schema; it runs in its own tool environment (its
    2.x pins jsonschema<4, which JupyterLab cannot share)."""
    text = (ROOT / "CITATION.cff").read_text()
    paper = text[text.index("preferred-citation:") :]
    assert "family-names: MacKay" in paper and "year: 2019" in paper and "1903.03088" in paper
    uv = Path(sys.executable).parent / "uv"
    out = subprocess.run(
        [str(uv), "tool", "run", "--from", "cffconvert==2.0.0", "cffconvert", "--validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_starts_jupyterlab_headless():
    port = free_port()
    options = f"--no-browser --port={port} --ip=127.0.0.1 --IdentityProvider.token=stn-test"
    lab = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_OPTIONS={options}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: make and the server stop together
    )
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and answer is None:
            try:
                url = f"http://127.0.0.1:{port}/api/contents?token=stn-test"
                with urllib.request.urlopen(url, timeout=5) as response:
                    answer = json.load(response)
            except OSError:
                assert lab.poll() is None, "make lab exited"
                time.sleep(1)
        assert answer is not None, "JupyterLab did not answer within 120 s"
        names = {item["name"] for item in answer["content"]}
        assert {path.name for path in NOTEBOOKS} <= names  # serving notebooks/
        lab_page = f"http://127.0.0.1:{port}/lab?token=stn-test"
        with urllib.request.urlopen(lab_page, timeout=10) as response:
            assert response.status == 200 and b"JupyterLab" in response.read()
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


def test_make_html_renders_the_executed_notebooks(tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    (executed / "toy_stn.ipynb").write_bytes((ROOT / "notebooks/toy_stn.ipynb").read_bytes())
    out = subprocess.run(
        ["make", "--no-print-directory", "html", f"EXECUTED={executed}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    page = ROOT / "build/html/toy_stn.html"
    assert "Self-Tuning Networks" in page.read_text()
