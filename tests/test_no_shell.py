"""No shell anywhere in the package: no ``shell=`` other than ``False``, no ``os.system`` or
``os.popen``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "livematte"


def test_no_shell_true_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                       and keyword.value.value is False):
                        offenders.append(f"{path.name}:{node.lineno}")
        if re.search(r"os\.system\(|os\.popen\(", source):
            offenders.append(f"{path.name}: os.system/os.popen")
    assert offenders == []
