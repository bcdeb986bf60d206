"""The prose's pointers: every "(README, "Section")" or "(docs/<page>.md, "Section")" in a tracked text file names
a heading that exists in that file (a heading that starts with the quoted text), so a section moved to another
page cannot leave params.yaml, a profile or a docstring pointing nowhere."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO

POINTER = re.compile(r'\b(README|docs/[\w-]+\.md)(?:\.md)?,\s+"([^"]+)"')


def headings(page: str) -> list[str]:
    text = (REPO / page).read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a comment in a code block is not a heading
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def pointers() -> list[tuple[str, str, str]]:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    found = []
    for f in files:
        if not f.endswith((".md", ".py", ".yaml", ".j2")) or f == "tests/test_docs.py" or not (REPO / f).is_file():
            continue
        for m in POINTER.finditer((REPO / f).read_text()):
            page = "README.md" if m.group(1) == "README" else m.group(1)
            found.append((f, page, " ".join(m.group(2).split())))
    return found


def dangling(found: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The pointers whose page is missing or has no heading starting with their section."""
    return [(f, page, section) for f, page, section in found
            if not (REPO / page).is_file() or not any(h.startswith(section) for h in headings(page))]


def test_every_pointer_names_a_section_that_exists():
    found = pointers()
    assert len(found) >= 15 and {p for _, p, _ in found} >= {"README.md", "docs/experiments.md", "docs/science.md"}
    assert dangling(found) == []


def test_a_pointer_to_a_moved_section_is_caught():
    m = POINTER.search('# Not in `methods` by default (README, "Online GRPO"):')  # the section lives in docs/
    planted = [("params.yaml", "README.md", m.group(2)), ("params.yaml", "docs/nowhere.md", "Controls")]
    assert dangling(planted) == planted
    assert dangling([("params.yaml", "docs/experiments.md", m.group(2))]) == []


def test_generated_blocks_follow_the_metrics():
    """Every generated block of the README and docs/ (weightspace.report.docs) is what the committed metrics give."""
    from weightspace.report.docs import update

    assert update(REPO, write=False) == []


def test_a_hand_edited_number_in_a_generated_block_is_caught(tmp_path):
    """A block whose count was typed over (the committed README with one number changed) is out of date."""
    import shutil

    from weightspace.report.docs import update

    from weightspace.report.docs import FILES

    for f in FILES:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, tmp_path / f)
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    shutil.copytree(REPO / "plots/teacher_sweep", tmp_path / "plots/teacher_sweep")
    assert update(tmp_path, write=False) == []
    readme = tmp_path / "README.md"
    text = readme.read_text()
    m = re.search(r"\*\*(\d+) of (\d+) claims hold", text)
    readme.write_text(text.replace(m.group(0), f"**{int(m.group(1)) + 1} of {m.group(2)} claims hold", 1))
    assert update(tmp_path, write=False) == ["README.md: results"]


def test_every_number_in_prose_comes_from_a_source():
    """Outside the generated blocks, every decimal number of the README's and docs/'s prose is one a metric file,
    a benchmark, a params file or the paper's declared numbers give at the precision written."""
    from weightspace.report.docs import untraced_numbers

    assert untraced_numbers(REPO) == []


def test_a_typed_number_no_metric_gives_is_caught(tmp_path):
    """SFT's ||dW||_F written as the committed geometry gives it passes; the same sentence with a number typed by
    hand (the first 3-decimal value above it that no source gives) fails, naming the file and the number."""
    import json
    import shutil

    from weightspace.report.docs import _source_values, untraced_numbers

    for d in ("metrics", "profiles"):
        shutil.copytree(REPO / d, tmp_path / d)
    for f in ("README.md", "params.yaml", "benchmarks/README.md"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, tmp_path / f)
    (tmp_path / "docs").mkdir()
    sft = json.loads((REPO / "metrics/geometry.json").read_text())["frobenius"]["sft"]
    page = tmp_path / "docs/page.md"
    page.write_text(f"SFT's update has a Frobenius norm of {sft:.3f}.\n")
    assert untraced_numbers(tmp_path) == []
    values, texts = _source_values(tmp_path)
    typed = next(x for x in (round(sft + i / 1000, 3) for i in range(1, 1000))
                 if f"{x:.3f}" not in texts and x not in {round(v, 3) for v in values}
                 and x not in {round(100 * v, 3) for v in values})
    page.write_text(f"SFT's update has a Frobenius norm of {typed:.3f}.\n")
    assert [u.split(" (")[0] for u in untraced_numbers(tmp_path)] == [f"docs/page.md: {typed:.3f}"]


def test_the_power_block_names_the_smallest_detected_multiplier_only_at_ten_reruns(tmp_path):
    """docs.power's sweep line: a multiplier counts once it has 10 reruns with at least 90% detected; smaller ones
    with fewer reruns are named with their counts, and one whose misses already rule out 90% says so."""
    import copy
    import json

    from weightspace.report import docs

    pw = json.loads((REPO / "metrics/power.json").read_text())
    (tmp_path / "metrics").mkdir()

    def line(rows: dict, best) -> str:
        p = copy.deepcopy(pw)
        p["sweep"]["multipliers"] = {m: {"k": k, "n": n, "rate_interval": [0.0, 1.0]} for m, (k, n) in rows.items()}
        p["sweep"]["smallest_detected"] = best
        (tmp_path / "metrics/power.json").write_text(json.dumps(p))
        return next(x for x in docs.power(tmp_path).splitlines() if x.startswith("Smallest multiplier"))

    assert line({"1.5": (6, 6)}, None).endswith("not established; fewer than 10 reruns of x1.5 (6 of 6).")
    assert line({"1.25": (4, 6), "1.5": (10, 10)}, 1.5).endswith(
        ": x1.5; fewer than 10 reruns of x1.25 (4 of 6, stopped: its misses already rule out the target).")
    assert line({"1.25": (5, 6), "1.5": (10, 10)}, 1.5).endswith(": x1.5; fewer than 10 reruns of x1.25 (5 of 6).")
    assert line({"1.25": (9, 10), "1.5": (10, 10)}, 1.25).endswith(": x1.25.")
