"""The grader against a mischievous student: every attack of issue 13, with and without the sandbox.

A tiny purpose-built assignment (two exercises, nbgrader markers, ~1.5 s per grading) stands in for
the course notebooks; each attack is one extra cell in a submission that has not solved the
exercises (or solved them wrongly), and must earn 0 points and leave the repository and the
instructor's files unchanged. ``tests/test_grader_notebooks.py`` does the same on notebook 01.
"""

from __future__ import annotations

import ast
import hashlib
import os
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from drdd_edu.assignments import build_student_version, grade, graded_cells
from drdd_edu.grading import sandbox_problem
from drdd_edu.grading.isolation import repo_root

REPO = repo_root()
NO_SANDBOX = sandbox_problem()
MODES = [
    pytest.param(False, id="no-sandbox"),
    pytest.param(
        True,
        id="sandbox",
        marks=pytest.mark.skipif(
            NO_SANDBOX is not None and not os.environ.get("DRDD_EDU_REQUIRE_SANDBOX"),
            reason=f"bubblewrap unavailable: {NO_SANDBOX}",
        ),
    ),
]

ASSIGNMENT = """# %%
import math

# %% nbgrader={"grade": false, "grade_id": "sq", "locked": false, "solution": true, "schema_version": 3}
def square(x):
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "sq-test", "points": 1, "locked": true, "solution": false, "schema_version": 3}
assert square(3) == 9
### BEGIN HIDDEN TESTS
assert type(square(1.5)) is float and math.isclose(square(1.5), 2.25)
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "hyp", "locked": false, "solution": true, "schema_version": 3}
def hypot(a, b):
    ### BEGIN SOLUTION
    return math.sqrt(a * a + b * b)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "hyp-test", "points": 3, "locked": true, "solution": false, "schema_version": 3}
assert math.isclose(hypot(3, 4), 5.0)
assert abs(hypot(5, 12) - 13) < 1e-12
print("hypot: all checks passed")
"""

# wrong answers that pass the visible test of "sq" only
WRONG = {"sq": "def square(x):\n    return 9", "hyp": "def hypot(a, b):\n    return 0.0"}

# attacks on the grading machinery: each must leave the unsolved (or wrong) notebook at 0 points
HOOK_ATTACKS = {
    "custom-exception-handler": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)",
    "input-transformer": (
        "def _no_asserts(lines):\n"
        "    return ['pass\\n'] if any('assert' in line for line in lines) else lines\n"
        "get_ipython().input_transformers_cleanup.append(_no_asserts)"
    ),
    "ast-transformer": (
        "import ast\n"
        "class _DropAsserts(ast.NodeTransformer):\n"
        "    def visit_Assert(self, node):\n"
        "        return ast.Pass()\n"
        "    def visit_Raise(self, node):\n"
        "        return ast.Pass()\n"
        "get_ipython().ast_transformers.append(_DropAsserts())"
    ),
    "settrace": (
        "import sys, threading\n"
        "def _skip(frame, event, arg):\n"
        "    if event == 'line':\n"
        "        try:\n"
        "            frame.f_lineno = frame.f_lineno + 1\n"
        "        except Exception:\n"
        "            pass\n"
        "    return _skip\n"
        "try:\n"
        "    threading.settrace(_skip)\n"
        "    sys.settrace(_skip)\n"
        "except RuntimeError as err:\n"
        "    print('refused:', err)"
    ),
    "builtins": (
        "import builtins\n"
        "builtins.abs = lambda x: 0\n"
        "class _Yes(Exception):\n"
        "    pass\n"
        "builtins.NotImplementedError = _Yes\n"
        "builtins.AssertionError = _Yes"
    ),
    "monkeypatch-module": "import math\nmath.isclose = lambda *a, **k: True",
}


# attacks written into the exercise's own cell (a cell of their own would be overwritten by it)
SOLUTION_ATTACKS = {
    "patch-while-the-test-runs": {
        "sq": (
            "def square(x):\n"
            "    import math as m\n"
            "    m.isclose = lambda *a, **k: True\n"
            "    globals()['math'] = type('M', (), {'isclose': staticmethod(lambda *a, **k: True)})\n"
            "    return 9.0 if x == 3 else 0.0"
        )
    },
    "self-restoring-patch": {
        "sq": (
            "import math\n"
            "def square(x):\n"
            "    real = math.isclose\n"
            "    def once(*a, **k):\n"
            "        math.isclose = real\n"
            "        return True\n"
            "    math.isclose = once\n"
            "    return 9.0 if x == 3 else 0.0"
        )
    },
    "excepthook-and-exit": {
        "hyp": "import sys\nsys.excepthook = lambda *a: None\ndef hypot(a, b):\n    raise SystemExit(0)"
    },
    "rebind-names": {
        "sq": (
            "import types\n"
            "math = types.SimpleNamespace(isclose=lambda *a, **k: True, sqrt=lambda x: 0.0)\n"
            "def square(x):\n"
            "    return 9"
        )
    },
}


def _tree_digest(folder: Path) -> str:
    """Names, sizes and contents of the files under ``folder`` (no caches)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


#: top-level folders the test run itself creates while these tests run (other xdist workers write
#: notebook figures and caches there), so their appearance is not an attack's doing
HARNESS_OUTPUTS = frozenset({"test-artifacts", ".pytest_cache", ".hypothesis"})


def _repo_state() -> tuple:
    """What the attacks target in the repository: its top level (less the test harness's own
    output folders), the notebooks and the package."""
    return (
        sorted(p.name for p in REPO.iterdir() if p.name not in HARNESS_OUTPUTS),
        _tree_digest(REPO / "notebooks"),
        _tree_digest(REPO / "drdd_edu"),
    )


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    """The instructor's folder (source and a decoy sibling) and the student version."""
    folder = tmp_path_factory.mktemp("instructor")
    source = folder / "99_tiny.py"
    source.write_text(ASSIGNMENT)
    (folder / "99_other.py").write_text("# another instructor file\n")
    student = folder.parent / "student_99_tiny.ipynb"
    build_student_version(source, student)
    return source, student


@pytest.fixture(scope="module")
def repo_before():
    return _repo_state()


def _submission(tmp_path, student: Path, attack: str, solutions=None, at_end=False) -> Path:
    nb = nbformat.read(student, as_version=4)
    for grade_id, code in (solutions or {}).items():
        graded_cells(nb)[grade_id].source = code
    cell = nbformat.v4.new_code_cell(attack)
    nb.cells.insert(len(nb.cells) if at_end else 1, cell)
    path = tmp_path / f"{uuid.uuid4().hex[:8]}_99_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def _grade(path, source, sandbox, **kwargs):
    kwargs.setdefault("timeout_s", 30)
    return grade(path, source, sandbox=sandbox, env={"OMP_NUM_THREADS": "1"}, **kwargs)


@pytest.mark.parametrize("sandbox", MODES)
def test_honest_baseline(tmp_path, assignment, sandbox):
    source, student = assignment
    unsolved = _grade(student, source, sandbox)
    assert unsolved.total == 0 and unsolved.max_total == 4
    assert unsolved.isolation == ("sandbox" if sandbox else "none")
    wrong = _grade(_submission(tmp_path, student, "pass", WRONG), source, sandbox)
    assert wrong.points == {"sq-test": 0.0, "hyp-test": 0.0}, wrong.summary()
    assert unsolved.review == [] and wrong.review == []  # honest code is not flagged
    right = {
        "sq": "def square(x):\n    return x * x",
        "hyp": "def hypot(a, b):\n    return math.sqrt(a * a + b * b)",
    }
    solved = _grade(_submission(tmp_path, student, "pass", right), source, sandbox)
    assert solved.points == {"sq-test": 1.0, "hyp-test": 3.0}, solved.summary()
    # the test's own output is in the executed notebook
    out = graded_cells(solved.notebook)["hyp-test"].outputs
    assert any("hypot: all checks passed" in o.get("text", "") for o in out)


@pytest.mark.parametrize("sandbox", MODES)
@pytest.mark.parametrize("attack", sorted(HOOK_ATTACKS) + sorted(SOLUTION_ATTACKS))
def test_hooks_cannot_change_a_grade(tmp_path, assignment, repo_before, attack, sandbox):
    source, student = assignment
    if attack in HOOK_ATTACKS:  # a cell of its own, with the unsolved stubs, then wrong answers
        variants = [(HOOK_ATTACKS[attack], None), (HOOK_ATTACKS[attack], WRONG)]
    else:  # inside the exercise's cell, with the other exercise unsolved, then wrong
        variants = [
            ("pass", SOLUTION_ATTACKS[attack]),
            ("pass", {**WRONG, **SOLUTION_ATTACKS[attack]}),
        ]
    for code, solutions in variants:
        report = _grade(_submission(tmp_path, student, code, solutions), source, sandbox)
        assert report.total == 0, f"{attack}: {report.summary()}"
        assert report.failure is None, report.summary()
        assert report.review, f"{attack} was not flagged for review"
    # a correct solution still earns its points after the attack (the restore is not destructive)
    right = {
        "sq": "def square(x):\n    return x * x",
        "hyp": "def hypot(a, b):\n    return math.sqrt(a * a + b * b)",
    }
    if not sandbox and attack in HOOK_ATTACKS:  # (the same code path with the sandbox)
        report = _grade(
            _submission(tmp_path, student, HOOK_ATTACKS[attack], right), source, sandbox
        )
        assert report.total == 4, f"{attack}: {report.summary()}"
    assert _repo_state() == repo_before


def _finder(targets: list[str]) -> str:
    """Student code that looks for the instructor's files by relative paths and through the
    package's location, tries to read, rewrite, delete and create files there, and reports."""
    return f"""
import os, pathlib, drdd_edu
found = []
bases = [pathlib.Path.cwd(), *pathlib.Path.cwd().parents,
         *pathlib.Path(drdd_edu.__file__).resolve().parents, *map(pathlib.Path, {targets!r})]
for base in bases:
    for name in ("notebooks", "99_tiny.py", "pyproject.toml", "tests"):
        path = base / name
        if path.exists() and path.resolve() != pathlib.Path("/tests"):
            found.append(str(path))
            if path.name == "99_tiny.py":
                try:
                    text = path.read_text()
                    path.write_text(text.replace("assert square(3) == 9", "pass"))
                    (base / "99_other.py").unlink()
                except OSError as err:
                    print("refused:", err)
    if str(base) in {targets!r} or any(f.startswith(str(base)) for f in found):
        try:
            pwned = base / "pwned-{uuid.uuid4().hex}"
            pwned.write_text("x")
            found.append("wrote " + str(pwned))
        except OSError:
            pass
print("FOUND", found)
"""


@pytest.mark.parametrize("sandbox", MODES)
def test_instructor_files_are_out_of_reach(tmp_path, assignment, repo_before, sandbox):
    source, student = assignment
    before = {p.name: p.read_bytes() for p in source.parent.iterdir()}
    # without the sandbox only relative paths and the package's location are closed; the sandbox
    # also hides absolute paths (the repository's and the instructor's folder)
    absolute = [str(REPO), str(REPO / "notebooks"), str(source.parent)] if sandbox else []
    attack = _finder(absolute)
    report = _grade(_submission(tmp_path, student, attack, WRONG), source, sandbox)
    assert report.total == 0
    cell = report.notebook.cells[1]
    text = "".join(o.get("text", "") for o in cell.outputs)
    line = next(x for x in text.splitlines() if x.startswith("FOUND "))
    found = ast.literal_eval(line[len("FOUND ") :])
    # nothing of the instructor's was found; a file "written" at a host path in the sandbox lands in
    # the sandbox's own tmpfs (e.g. the repository's path exists there when .venv lives inside it,
    # under a /tmp checkout): it must not exist on the host
    assert [f for f in found if not f.startswith("wrote ")] == [], text
    leaked = [f[len("wrote ") :] for f in found if f.startswith("wrote ")]
    assert not any(Path(p).exists() for p in leaked), leaked
    assert not leaked or sandbox, leaked  # without the sandbox nothing may be written there at all
    assert {p.name: p.read_bytes() for p in source.parent.iterdir()} == before
    assert _repo_state() == repo_before
    # the next student's unsolved notebook is still graded against the intact source
    assert _grade(student, source, sandbox).total == 0


def test_absolute_paths_are_reachable_only_without_the_sandbox(tmp_path, assignment):
    """What the README says needs the sandbox: an absolute path to the repository."""
    source, student = assignment
    probe = f"import os\nprint('REPO VISIBLE', os.path.isdir({str(REPO / 'notebooks')!r}))"
    report = _grade(_submission(tmp_path, student, probe), source, False)
    text = "".join(o.get("text", "") for o in report.notebook.cells[1].outputs)
    assert "REPO VISIBLE True" in text


@pytest.mark.parametrize("sandbox", MODES)
def test_environment_is_scrubbed(tmp_path, assignment, sandbox, monkeypatch):
    source, student = assignment
    monkeypatch.setenv("INSTRUCTOR_SECRET", "s3cret")
    probe = (
        "import os, sys\n"
        "print('SECRET', os.environ.get('INSTRUCTOR_SECRET'))\n"
        "print('CWD', os.getcwd())\n"
        # the Python environment itself may live inside the repository (.venv): only the
        # repository's own folders count
        f"print('PATHS', [p for p in sys.path if p.startswith({str(REPO)!r}) and not p.startswith(sys.prefix)])\n"
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('NETWORK yes')\n"
        "except OSError:\n"
        "    print('NETWORK no')\n"
    )
    report = _grade(_submission(tmp_path, student, probe), source, sandbox)
    text = "".join(o.get("text", "") for o in report.notebook.cells[1].outputs)
    assert "SECRET None" in text and "PATHS []" in text, text
    cwd = text.split("CWD ")[1].split()[0]
    assert not Path(cwd).is_relative_to(REPO) and "drdd-grade-" in cwd
    if sandbox:
        assert "NETWORK no" in text


def _alive(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry))
    return pids


@pytest.mark.parametrize("sandbox", MODES)
def test_timeout_holds_against_an_ignored_sigint_and_children_die(tmp_path, assignment, sandbox):
    """A SIGINT-ignoring loop after the first test, and children that left the kernel's session:
    the per-cell timeout ends it, the first test keeps its point, no process survives."""
    source, student = assignment
    marker = f"drdd-attack-{uuid.uuid4().hex}"
    spawn = (
        "import subprocess, sys, os\n"
        f"child = 'import time\\nwhile True: time.sleep(0.05)  # {marker}'\n"
        "subprocess.Popen([sys.executable, '-c', child], start_new_session=True)\n"
        "if os.fork() == 0:\n"  # a grandchild that leaves the session and outlives its parent
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, '-c', child])\n"
        "    os._exit(0)\n"
    )
    loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    nb = nbformat.read(student, as_version=4)
    cells = graded_cells(nb)
    cells["sq"].source = "def square(x):\n    return x * x"
    index = nb.cells.index(cells["sq-test"]) + 1
    nb.cells[index:index] = [nbformat.v4.new_code_cell(spawn), nbformat.v4.new_code_cell(loop)]
    path = tmp_path / "loop_99_tiny.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    report = _grade(path, source, sandbox, timeout_s=3)
    elapsed = time.monotonic() - start
    assert report.failure == "timeout" and "did not stop when interrupted" in report.execution_error
    assert elapsed < 60, elapsed
    assert report.points == {"sq-test": 1.0, "hyp-test": 0.0}
    assert [c.status for c in report.cells] == ["passed", "not run"]
    time.sleep(0.3)
    assert _alive(marker) == [], "a child of the kernel outlived grading"


@pytest.mark.parametrize("sandbox", MODES)
def test_total_timeout_and_dead_kernel(tmp_path, assignment, sandbox):
    source, student = assignment
    right = {"sq": "def square(x):\n    return x * x"}
    slow = _submission(tmp_path, student, "import time\ntime.sleep(30)", right, at_end=False)
    report = _grade(slow, source, sandbox, timeout_s=60, total_timeout_s=4)
    assert report.failure == "timeout", report.summary()
    assert "in all" in report.execution_error or "total limit" in report.execution_error
    assert report.total == 0 and report.line().count("\n") == 0
    nb = nbformat.read(student, as_version=4)
    cells = graded_cells(nb)
    cells["sq"].source = right["sq"]
    index = nb.cells.index(cells["sq-test"]) + 1
    nb.cells.insert(index, nbformat.v4.new_code_cell("import os\nos._exit(3)"))
    path = tmp_path / "dies_99_tiny.ipynb"
    nbformat.write(nb, path)
    report = _grade(path, source, sandbox)
    assert report.failure == "dead kernel", report.summary()
    assert report.points == {"sq-test": 1.0, "hyp-test": 0.0}


def test_endless_output_is_capped(tmp_path, assignment):
    source, student = assignment
    flood = "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 100_000 + '\\n')"
    report = _grade(_submission(tmp_path, student, flood), source, False)
    text = "".join(o.get("text", "") for o in report.notebook.cells[1].outputs)
    assert len(text) < 5 * 2**20 and "dropped this cell's output" in text


def test_memory_is_capped(tmp_path, assignment):
    source, student = assignment
    hog = "try:\n    block = bytearray(3 * 2**30)\n    print('GOT')\nexcept MemoryError:\n    print('CAPPED')"
    report = _grade(_submission(tmp_path, student, hog), source, False, memory_mb=1024)
    text = "".join(o.get("text", "") for o in report.notebook.cells[1].outputs)
    assert "CAPPED" in text, text


def test_sandbox_required_but_missing(monkeypatch, assignment):
    from drdd_edu.grading import SandboxUnavailable, isolation

    source, student = assignment
    monkeypatch.setattr(isolation.shutil, "which", lambda name: None)
    isolation.sandbox_problem.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap"):
            grade(student, source, sandbox=True)
        with pytest.warns(UserWarning, match="NOT isolated"):
            report = grade(student, source, sandbox=None)
        assert report.isolation == "none" and report.total == 0
    finally:
        monkeypatch.undo()
        isolation.sandbox_problem.cache_clear()
