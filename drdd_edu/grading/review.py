"""Flag students' code that reaches for the grading machinery, for the instructor to read.

The guard (:mod:`.guard`) makes the documented hooks harmless, but code written against the
grader itself can still forge a pass (see the README, "Grading untrusted code"). Such code needs
tools an exercise never does — IPython's shell, frames, the garbage collector, ``ctypes``, the
builtins, ``exec``, signals, processes — so :func:`review_flags` lists the cells the student wrote
or changed that use them. A flag does not change the grade; it says where to look.
"""

from __future__ import annotations

import ast

from .guard import parse_source

__all__ = ["SUSPICIOUS", "review_flags"]

#: names and attributes no exercise of this course needs
SUSPICIOUS = frozenset(
    {
        "get_ipython",
        "set_custom_exc",
        "input_transformers_cleanup",
        "input_transformers_post",
        "input_transformer_manager",
        "ast_transformers",
        "settrace",
        "setprofile",
        "addaudithook",
        "_getframe",
        "_current_frames",
        "f_back",
        "f_globals",
        "f_locals",
        "gi_frame",
        "tb_frame",
        "gc",
        "ctypes",
        "inspect",
        "builtins",
        "__builtins__",
        "__code__",
        "__globals__",
        "__import__",
        "importlib",
        "modules",
        "exec",
        "eval",
        "compile",
        "globals",
        "vars",
        "setattr",
        "delattr",
        "signal",
        "fork",
        "setsid",
        "kill",
        "subprocess",
        "system",
        "popen",
        "multiprocessing",
        "threading",
        "socket",
        "ipykernel",
        "IPython",
        "remove",
        "unlink",
        "rmtree",
        "rename",
        "_exit",
        "excepthook",
        "displayhook",
    }
)


def _uses(tree: ast.AST, protected: frozenset[str]) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in SUSPICIOUS:
            found.add(node.id)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in protected:
            found.add(f"rebinds {node.id}")  # a name the instructor's imports bind
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in protected:
            found.add(f"redefines {node.name}")
        elif isinstance(node, ast.Attribute):
            if node.attr in SUSPICIOUS:
                found.add(node.attr)
            if isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name):
                found.add(f"assigns {node.value.id}.{node.attr}")  # e.g. torch.allclose = ...
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + (
                [node.module] if getattr(node, "module", None) else []
            )
            for name in names:
                if name.split(".")[0] in SUSPICIOUS:
                    found.add(name.split(".")[0])
    return found


def review_flags(
    student_sources: list[tuple[int, str]], protected: frozenset[str] = frozenset()
) -> list[str]:
    """``"cell N: name, name"`` for each student-written cell that uses a suspicious tool.

    Args:
        student_sources: ``(cell index, source)`` of the cells the student wrote or changed.
        protected: names the instructor's imports bind (``torch``, ``q_sample``, ...): assigning
            or redefining one is flagged too (a plain ``import`` of it is not).
    """
    from IPython.core.inputtransformer2 import TransformerManager

    manager = TransformerManager()
    flags = []
    for index, source in student_sources:
        try:
            tree = parse_source(manager.transform_cell(source))
        except (SyntaxError, ValueError):
            continue
        used = _uses(tree, protected)
        if any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()):
            used.add("magics or shell commands")
        if used:
            flags.append(f"cell {index}: " + ", ".join(sorted(used)))
    return flags
