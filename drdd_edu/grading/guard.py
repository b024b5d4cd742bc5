"""Test cells that student code cannot skip, swallow or fake through Python's and IPython's hooks.

How a test cell is run (see :func:`test_request`):

* It is **not** sent as cell code. The grader sends an *empty* execute request whose
  ``user_expressions`` call a runner installed by :data:`SETUP` before any student code ran. An
  empty cell returns before IPython's input transformers, AST transformers and custom exception
  handler are involved, and ``user_expressions`` are evaluated with ``eval``.
* The runner first **restores** the grading-relevant state from a snapshot taken at setup: the
  builtins, the ``sys.modules`` entries and the functions/classes of every module the instructor's
  notebook imports (``torch.allclose``, ``q_sample``, ...) and the methods of their classes, the
  names those imports bind in the notebook, ``sys.excepthook``/``displayhook``/``stdout``/
  ``stderr``, IPython's custom exception handler and transformer lists. It then re-runs the
  instructor's import statements, compiles the test cell's source itself and runs it.
* It returns a **per-run random token** (made for this cell, sent only with this request) only if
  the test ran to its end without an exception *and* nothing of the snapshot changed while it ran
  (a function that patches ``torch.allclose`` when called is caught). Anything else returns
  ``"FAIL <reason>"``. The grader decides from the reply (:func:`verdict`); printed output plays
  no part.
* A Python **audit hook** installed at setup (audit hooks cannot be removed) refuses
  ``sys.settrace``, ``sys.setprofile`` and further audit hooks for the kernel's lifetime, so no
  tracer can jump over assert lines or watch the runner.

What this cannot do: student code runs in the same process as the tests (the test calls it), so
code written *against this grader* (rewriting ipykernel's or IPython's request handling, or
locating the runner through ``gc`` or frames) can still forge a pass. ``review.py`` flags such
code for the instructor; the README's "Grading untrusted code" states the limits.
"""

from __future__ import annotations

import ast
import secrets
import threading

__all__ = ["SETUP", "import_statements", "setup_request", "test_request", "verdict"]

# The kernel-side code. Runs once, first, before any cell of the submission.
SETUP = r'''
def _drdd_grader_setup(runner_name, import_src, module_names):
    import builtins as bmod
    import sys
    import traceback
    import types

    blocked = frozenset({"sys.settrace", "sys.setprofile", "sys.addaudithook"})

    def audit(event, args):
        if event in blocked:
            raise RuntimeError(f"{event} is not allowed while grading")

    sys.addaudithook(audit)

    shell = get_ipython()  # noqa: F821 — the kernel's shell
    user_ns = shell.user_ns
    orig_builtins = dict(bmod.__dict__)
    scratch = {}
    exec(compile(import_src, "<grader imports>", "exec"), scratch)
    modules = {}
    for name in module_names:
        if name in sys.modules:
            modules[name] = sys.modules[name]
    for value in scratch.values():
        if isinstance(value, types.ModuleType):
            modules.setdefault(value.__name__, value)
    modules.pop("builtins", None)
    modules.pop("sys", None)

    def keep(value):
        return callable(value) or isinstance(value, (types.ModuleType, staticmethod, classmethod, property))

    snapshots, seen = [], set()  # (owner, is_module, {name: value})
    for mod in modules.values():
        snapshots.append((mod, True, {k: v for k, v in vars(mod).items() if keep(v)}))
        top = mod.__name__.split(".")[0]
        for value in list(vars(mod).values()):
            if (isinstance(value, type) and id(value) not in seen
                    and str(getattr(value, "__module__", "")).split(".")[0] == top):
                seen.add(id(value))
                snapshots.append((value, False, {k: v for k, v in vars(value).items() if keep(v)}))
    saved = {
        "excepthook": sys.excepthook, "displayhook": sys.displayhook,
        "stdout": sys.stdout, "stderr": sys.stderr,
    }
    manager = shell.input_transformer_manager
    shell_saved = {
        "CustomTB": shell.CustomTB, "custom_exceptions": shell.custom_exceptions,
        "input_transformer_manager": manager,
    }
    lists = [
        (owner, name, getattr(owner, name), list(getattr(owner, name)))
        for owner, name in (
            (manager, "cleanup_transforms"), (manager, "line_transforms"),
            (manager, "token_transformers"), (shell, "input_transformers_post"),
            (shell, "ast_transformers"),
        )
    ]
    import_code = compile(import_src, "<grader imports>", "exec")
    compile_, exec_, print_exception = compile, exec, traceback.print_exception
    setattr_, isinstance_, list_, len_, str_, type_ = setattr, isinstance, list, len, str, type
    base_exception = BaseException
    missing = object()

    def changes():
        """Names of the snapshot whose value is not the snapshot's any more."""
        found = []
        bdict = bmod.__dict__
        for key, value in orig_builtins.items():
            if bdict.get(key, missing) is not value:
                found.append("builtins." + key)
        for name, mod in modules.items():
            if sys.modules.get(name) is not mod:
                found.append("sys.modules[" + repr(name) + "]")
        for owner, _is_module, snap in snapshots:
            current = vars(owner)
            for key, value in snap.items():
                if current.get(key, missing) is not value:
                    found.append(getattr(owner, "__name__", "?") + "." + key)
        return found

    def restore():
        bdict = bmod.__dict__
        for key in list_(bdict):
            if key not in orig_builtins:
                del bdict[key]
        bdict.update(orig_builtins)
        user_ns["__builtins__"] = bmod
        for name, mod in modules.items():
            sys.modules[name] = mod
        for owner, is_module, snap in snapshots:
            current = vars(owner)
            for key, value in snap.items():
                if current.get(key, missing) is not value:
                    if is_module:
                        current[key] = value
                    else:
                        try:
                            setattr_(owner, key, value)
                        except (TypeError, AttributeError):
                            pass
        sys.excepthook, sys.displayhook = saved["excepthook"], saved["displayhook"]
        sys.stdout, sys.stderr = saved["stdout"], saved["stderr"]
        for name, value in shell_saved.items():
            setattr_(shell, name, value)
        for owner, name, obj, content in lists:
            obj[:] = content
            setattr_(owner, name, obj)

    def describe(err):
        try:
            text = str_(err).strip().splitlines()
            text = text[0] if text else ""
        except base_exception:
            text = "(unprintable)"
        try:
            name = type_(err).__name__
        except base_exception:
            name = "Exception"
        return (name + (": " + text if text else ""))[:300]

    module_type = types.ModuleType
    dict_, id_ = dict, id

    class Frozen(module_type):
        """A read-only copy of a module, bound to the test's names while the test runs."""

        def __setattr__(self, key, value):
            raise AttributeError(f"module {self.__name__!r} is read-only while tests run")

        def __delattr__(self, key):
            raise AttributeError(f"module {self.__name__!r} is read-only while tests run")

    def frozen(mod):
        copy = Frozen(mod.__name__)
        vars(copy).update(vars(mod))
        return copy

    import_scratch = {}
    exec_(import_code, import_scratch)
    import_names = frozenset(k for k in import_scratch if k != "__builtins__")

    def run(src, name, token):
        try:
            restore()
            # the test runs in a copy of the notebook's namespace: student code called by the test
            # cannot rebind the names the test reads, and the instructor's imports are rebound,
            # modules as read-only copies (patching torch.allclose inside a function has no effect)
            test_ns = dict_(user_ns)
            exec_(import_code, test_ns)
            originals = {id_(m): m for m in modules.values()}
            for key in import_names:
                value = test_ns.get(key)
                if isinstance_(value, module_type) and id_(value) in originals:
                    test_ns[key] = frozen(value)
            before = dict_(test_ns)
            code = compile_(src, "<test cell " + name + ">", "exec", dont_inherit=True)
        except base_exception as err:
            return "FAIL GraderError: " + describe(err)
        try:
            exec_(code, test_ns)
        except base_exception as err:
            try:
                print_exception(type_(err), err, err.__traceback__)
            except base_exception:
                pass
            return "FAIL " + describe(err)
        finally:
            for key, value in test_ns.items():  # what the test defined stays defined
                if key not in import_names and before.get(key, missing) is not value:
                    user_ns[key] = value
        changed = changes()
        if changed:
            restore()
            shown = ", ".join(changed[:4]) + (" ..." if len_(changed) > 4 else "")
            return "FAIL Tampering: changed while the test ran: " + shown
        return token

    user_ns[runner_name] = run
'''


def import_statements(sources: list[str]) -> tuple[str, list[str]]:
    """The top-level ``import``/``from ... import`` statements of the instructor's cells, as one
    program, and the module names they load (with parents), for the kernel-side snapshot.

    IPython magics are translated first; a cell that still does not parse is skipped.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    manager = TransformerManager()
    lines, modules = [], []
    for source in sources:
        try:
            tree = parse_source(manager.transform_cell(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "__future__":
                    continue
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            lines.append(ast.unparse(node))
            for name in names:
                parts = name.split(".")
                modules += [".".join(parts[: i + 1]) for i in range(len(parts))]
    # wrap each import: one that fails in the kernel must not stop the others
    program = "\n".join(f"try:\n    {line}\nexcept Exception:\n    pass" for line in lines)
    return program, sorted(set(modules))


_PARSE_LOCK = threading.Lock()


def parse_source(source: str) -> ast.Module:
    """``ast.parse`` under a process-wide lock: CPython 3.11's parser is not thread-safe
    (concurrent calls can fail with "SystemError: AST constructor recursion depth mismatch"),
    and :func:`drdd_edu.assignments.grade_many` grades submissions in threads."""
    with _PARSE_LOCK:
        return ast.parse(source)


def imported_names(import_src: str) -> frozenset[str]:
    """The names an :func:`import_statements` program binds (``torch``, ``q_sample``, ...)."""
    names = set()
    for node in ast.walk(parse_source(import_src)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
    return frozenset(names)


def setup_request(runner_name: str, import_src: str, module_names: list[str]) -> str:
    """The code of the setup request (sent once, before any cell of the submission)."""
    return (
        SETUP
        + f"\n_drdd_grader_setup({runner_name!r}, {import_src!r}, {module_names!r})"
        + "\ndel _drdd_grader_setup\n"
    )


def new_runner_name() -> str:
    return "_drdd_grader_" + secrets.token_hex(6)


def test_request(runner_name: str, source: str, grade_id: str) -> tuple[dict[str, str], str]:
    """``(user_expressions, token)`` for one test cell; send them with empty code."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)
    token = "PASS-" + secrets.token_hex(16)
    return {"grader": f"{runner_name}({code!r}, {grade_id!r}, {token!r})"}, token


def verdict(reply: dict, token: str) -> tuple[bool, str | None]:
    """``(passed, error)`` from the kernel's execute reply to :func:`test_request`."""
    if reply.get("status") != "ok":
        ename = reply.get("ename", "error")
        return (
            False,
            f"GraderError: the test could not be started ({ename}: {reply.get('evalue', '')})",
        )
    answer = (reply.get("user_expressions") or {}).get("grader")
    if not isinstance(answer, dict):
        return False, "GraderError: no answer from the test runner"
    if answer.get("status") != "ok":
        return False, (
            f"GraderError: the test runner failed ({answer.get('ename')}: {answer.get('evalue')})"
        )
    text = (answer.get("data") or {}).get("text/plain", "")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False, "GraderError: unreadable answer from the test runner"
    if value == token:
        return True, None
    if isinstance(value, str) and value.startswith("FAIL "):
        return False, value[5:].strip()[:300] or "failed"
    return False, "GraderError: unexpected answer from the test runner"
