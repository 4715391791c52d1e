"""The docs: the flag reference is what the commands' --help prints, the README stays short
and its links lead somewhere, and the site's navigation names pages that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import nbformat
import pytest
from absl import flags

from ktransfer import config, preflight
from ktransfer.commands import COMMANDS
from ktransfer.errors import KtransferError

from conftest import REPO


@pytest.mark.slow  # make docs runs the same check before make test's pytest: make test-slow
def test_the_flag_reference_is_what_help_prints():
    # A process of its own: the generator forks one per command, each defining its flags.
    check = subprocess.run([sys.executable, str(REPO / "docs" / "reference" / "generate.py"),
                            "--check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, \
        "docs/reference/flags.md is stale: run python docs/reference/generate.py"


def test_the_readme_is_short_and_its_links_lead_to_files():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets and [t for t in targets if not (REPO / t).exists()] == []


def test_every_page_in_the_navigation_exists_and_every_page_is_in_it():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert set(nav) == pages


@pytest.mark.slow
def test_the_readme_python_example_runs_as_shown(tmp_path):
    """The README's "From Python" block, run as a user would from a checkout (here a folder
    linking to this one's configs and package, so its runs/ land in tmp_path)."""
    block = re.search(r"## From Python\n\n```python\n(.*?)```", (REPO / "README.md").read_text(),
                      re.S)
    assert block, "README.md lost its From Python example"
    for name in ("configs", "ktransfer"):
        (tmp_path / name).symlink_to(REPO / name)
    done = subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy, answers = done.stdout.strip().splitlines()[-2:]
    assert float(accuracy) > 0.6 and answers.startswith("[('")


def test_the_notebooks_are_committed_with_their_outputs_and_no_native_log_lines():
    """A reader of the notebooks sees what each cell printed (make notebooks re-runs them),
    without TensorFlow's native log lines."""
    native = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+\.(?:cc|h):\d+\] ", re.M)
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        printed = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
        assert all(c.get("execution_count") for c in code), f"{path.name}: run make notebooks"
        assert "test accuracy:" in printed and not native.search(printed), path.name


# Written for the reader to fill in (an upper-case placeholder, "..."), or a flag outside the
# config (the help and listing flags the command prints and exits on).
PLACEHOLDER = re.compile(r"\.\.\.|\[--|(?<![\w.])[A-Z][A-Z_]{2,}(?![\w.])|--help|--list_")


def _documented_commands() -> list[tuple[str, str, list[str], str]]:
    """(page, command, arguments, the error line shown after it or "") of every
    `python -m ktransfer.X ...` line in the README's and the docs' code blocks (continuation
    lines joined, comments dropped, a shell loop's `$var` as 0)."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", page.read_text(),
                                re.S):
            lines = [line.strip().removeprefix("$ ")
                     for line in block.replace("\\\n", " ").splitlines()]
            for line, after in zip(lines, [*lines[1:], ""], strict=False):
                match = re.match(r"python -m ktransfer\.(\w+)(.*)", line)
                if match and not PLACEHOLDER.search(match.group(2).split("#")[0]):
                    args = shlex.split(re.sub(r"\$\{?\w+\}?", "0", match.group(2)),
                                       comments=True)
                    shown = after.split("error: ", 1)[1] if "error: --" in after else ""
                    found.append((str(page.relative_to(REPO)), match.group(1), args, shown))
    return found


def _made_by_an_earlier_command(args: list[str]) -> bool:
    """A flagfile outside configs/ that the reader's earlier commands write (a search's
    best.cfg, a run's flags.cfg) or copy (`cp configs/my_images.cfg my_images.cfg`)."""
    return any(a.startswith("--flagfile=") and not a.startswith("--flagfile=configs/")
               for a in args)


def test_the_docs_show_commands_and_each_parses_into_a_valid_config(monkeypatch):
    """Every documented command with nothing left for the reader to fill in: its flags exist,
    its flagfiles are in the repository, its values pass the config's rules and name
    registered entries (what the
    command checks before any work; the runs themselves are the quickstarts' tests); a command
    shown with its error fails with that error."""
    monkeypatch.chdir(REPO)
    commands = _documented_commands()
    shown = {c for _, c, _, _ in commands}
    assert len(commands) >= 25 and shown >= set(COMMANDS.names()) - {"find_lr"}
    failures = []
    for page, command, args, shown in commands:
        if _made_by_an_earlier_command(args):
            continue
        groups, build = COMMANDS.get(command).groups, COMMANDS.get(command).build
        fv = flags.FlagValues()
        config.define_flags(fv, groups())
        try:
            preflight.check_names(build(fv(["ktransfer." + command, *args]) and fv))
            error = ""
        except (flags.Error, KtransferError) as exc:
            error = str(exc)
        if error != shown:
            failures.append(f"{page}: python -m ktransfer.{command} {shlex.join(args)}: "
                            f"{error or 'no error'} (shown: {shown or 'none'})")
    assert failures == []


@pytest.mark.parametrize("name", ["quickstart.ipynb", "sentiment.ipynb"])
def test_no_committed_output_holds_a_path_of_the_machine_that_ran_it(name):
    """One held /work/main/.venv/... of the machine that last ran it (ce06f12);
    notebooks/execute.py now writes the checkout as `.` and the environment as `<python>`."""
    import json
    import sys

    outputs = json.dumps([cell.get("outputs", []) for cell in
                          json.loads((REPO / "notebooks" / name).read_text())["cells"]])
    for local in ("/work/", "/root/", "/home/", "/tmp/", str(REPO), sys.prefix):
        assert local not in outputs, local


# A figure block of the docs: the data files that hold its figures, then the figures.
DATA_BLOCK = re.compile(r"<!-- data: ([^>]+?) -->\n(.*?)<!-- /data -->", re.S)
DECIMAL = re.compile(r"(?<![\w.\-])[-+]?\d{1,3}(?:,\d{3})*\.\d+(?![\w.]|\.\d)")
SCALES = (1.0, 100.0, 1e-6, 1e3)  # as stored, percent, bytes -> MB, seconds -> ms


def _numbers(found: object) -> list[float]:
    """Every number of a data file: its values, and numbers inside its strings and keys (an
    arm named flip_0.10)."""
    if isinstance(found, bool):
        return []
    if isinstance(found, int | float):
        return [float(found)]
    if isinstance(found, str):
        return [float(n) for n in re.findall(r"\d+\.\d+", found)]
    if isinstance(found, dict):
        return [n for key, value in found.items() for n in _numbers(key) + _numbers(value)]
    if isinstance(found, list):
        return [n for value in found for n in _numbers(value)]
    return []


def unbacked_figures(text: str, data: object) -> list[str]:
    """Decimal figures of `text` that no number of `data` gives at the figure's precision (as
    stored, as a percentage, bytes as MB or seconds as ms; signs aside). A figure with an
    explicit sign (+3.1) may also be the difference of two of them (a gain)."""
    values = _numbers(data)
    scaled = {abs(x) * scale for x in values for scale in SCALES}
    gaps = {abs(a - b) * scale for a in values for b in values for scale in SCALES}
    missing = []
    for token in DECIMAL.findall(text):
        shown = abs(float(token.replace(",", "")))
        half = 0.5 * 10 ** -len(token.split(".")[1]) + 1e-9
        pool = scaled | gaps if token[0] in "+-" else scaled
        if not any(abs(x - shown) <= half for x in pool):
            missing.append(token)
    return missing


def _blocks() -> list[tuple[str, str, str]]:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [(str(page.relative_to(REPO)), path, body) for page in pages
            for path, body in DATA_BLOCK.findall(page.read_text())]


def test_every_figure_of_a_data_block_is_in_its_data_file():
    """Each `<!-- data: FILE -->` block of README.md and docs/ gives only figures its data
    file holds; a figure typed wrong, or a data file re-measured without the page, fails."""
    import json

    wrong = {}
    for page, paths, body in _blocks():
        files = [REPO / path for path in paths.split()]
        assert all(f.is_file() for f in files), f"{page}: no {paths}"
        missing = unbacked_figures(body, [json.loads(f.read_text()) for f in files])
        if missing:
            wrong[f"{page} <- {paths}"] = missing
    assert wrong == {}


def test_the_figure_check_catches_a_wrong_figure():
    data = {"runs": {"0": {"accuracy": 0.8592}}, "seconds": 12.3456}
    assert unbacked_figures("85.9 % in 12.35 s (12,345.6 ms)", data) == []
    assert unbacked_figures("85.8 % and 0.86", data) == ["85.8"]
    gains = {"transferred": 0.8592, "scratch": 0.1235}
    assert unbacked_figures("a gain of +73.6 points", gains) == []  # 85.92 % - 12.35 %
    assert unbacked_figures("a gain of 73.6 points", gains) == ["73.6"]


MEASURED = re.compile(r"\d+\.\d+ ?%|±|\d+\.\d+x\b")  # a percentage, a spread, a ratio
# Pages whose figures outside data blocks were measured before benchmark data files were kept,
# with how many such figures each still has: the count may only fall (re-measure a table with
# its benchmark, wrap it in a data block, lower the count); every other page has none.
UNRECORDED = {"docs/guides/adaptation.md": 20, "docs/guides/bigger-models.md": 7,
              "docs/guides/export.md": 1, "docs/guides/imagenet.md": 4,
              "docs/guides/probe.md": 2, "docs/guides/scale.md": 1, "docs/guides/text.md": 46,
              "docs/guides/tuning.md": 16, "docs/results/index.md": 7,
              "docs/results/speed.md": 21, "docs/tasks.md": 7}
EARLIER = "measured before ktransfer kept benchmark data files"  # what those pages say


def test_no_page_gains_a_figure_without_a_data_file():
    """No measured figure (a decimal percentage, a spread with ±, a ratio) outside a data
    block in README.md or docs/, but for the pages of UNRECORDED, which may not gain one and
    say at the top that their other figures are older."""
    found = {}
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        text = page.read_text()
        count = len(MEASURED.findall(DATA_BLOCK.sub("", text)))
        name = str(page.relative_to(REPO))
        if count or name in UNRECORDED:
            found[name] = count
            assert name not in UNRECORDED or EARLIER in text.split("\n## ")[0], name
    assert all(found[name] <= UNRECORDED.get(name, 0) for name in found), found
