"""Notebook parameters, papermill-style: read the cell tagged `parameters`, check overrides
against its defaults, and inject them as Python literals in a cell tagged
`injected-parameters`."""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from registry_tools.errors import UserError

if TYPE_CHECKING:  # nbformat is imported where used: `steps` (in every kernel) imports this package
    import nbformat


PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parameters_cell_index(nb: nbformat.NotebookNode, name: str) -> int:
    """Index of the cell tagged `parameters`; a notebook without one cannot take parameters."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in _tags(cell):
            return index
    raise UserError(
        f"notebook {name}: no code cell tagged {PARAMETERS_TAG!r} "
        "(tag the cell that holds the defaults, as papermill expects)"
    )


def parse_parameters(source: str, name: str) -> dict[str, Any]:
    """The defaults of a parameters cell: `name = literal` lines only, evaluated with `ast`.

    Anything else (calls, imports, expressions) is refused: the defaults decide which values a
    caller may pass and of which type, so they must be readable without running code.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise UserError(f"notebook {name}: parameters cell line {exc.lineno}: {exc.msg}") from None
    defaults: dict[str, Any] = {}
    for statement in tree.body:
        target, value = _assignment(statement)
        if target is None or value is None:
            raise UserError(
                f"notebook {name}: parameters cell line {statement.lineno}: "
                f"{ast.unparse(statement)!r} is not `name = literal`"
            )
        try:
            defaults[target] = ast.literal_eval(value)
        except ValueError:
            raise UserError(
                f"notebook {name}: parameter {target!r} default "
                f"{ast.unparse(value)!r} is not a plain Python literal"
            ) from None
    return defaults


def _assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
    ):
        return statement.targets[0].id, statement.value
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.value
    return None, None


def notebook_parameters(nb: nbformat.NotebookNode, name: str) -> dict[str, Any]:
    """The defaults declared by a notebook's parameters cell."""
    return parse_parameters(nb.cells[parameters_cell_index(nb, name)].source, name)


def is_literal(value: Any) -> bool:
    """True when `repr(value)` is Python source that `ast.literal_eval` gives back unchanged."""
    if value is None or isinstance(value, bool | int | str | bytes):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple | set):
        return all(is_literal(item) for item in value)
    if isinstance(value, dict):
        return all(is_literal(k) and is_literal(v) for k, v in value.items())
    return False


def _type_name(default: Any) -> str:
    return type(default).__name__


def check_value(name: str, value: Any, default: Any, shown: str | None = None) -> Any:
    """`value` if it is a plain literal of the default's type (an int is fine for a float).

    A default of None accepts any literal. `shown` is how the value is quoted in the error
    (the user's text for command-line values).
    """
    shown = shown if shown is not None else repr(value)
    if not is_literal(value):
        raise UserError(f"parameter {name!r}: {shown} is not a plain Python literal")
    if default is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise UserError(f"parameter {name!r} expects {_type_name(default)}, got {shown}")
    return value


_NOT_A_LITERAL = object()


def parse_cli_value(name: str, text: str, default: Any) -> Any:
    """A `-p name value` value: a Python literal, or the text itself where a string is expected.

    `-p concurrency 4` gives 4; `-p base_url http://x` gives the string (the default is one);
    `-p concurrency ten` is refused because 'ten' is not an int literal.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = _NOT_A_LITERAL
    if isinstance(default, str) and not isinstance(value, str):
        return text
    if value is _NOT_A_LITERAL:
        if default is None:
            return text
        raise UserError(f"parameter {name!r} expects {_type_name(default)}, got {text!r}")
    return check_value(name, value, default, shown=repr(text))


def unknown_parameter(name: str, known: Iterable[str], where: str) -> UserError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (parameters: {', '.join(known)})"
    return UserError(f"unknown parameter {name!r} for {where}{hint}")


def check_parameters(
    params: Mapping[str, Any], defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Validate Python values against a notebook's defaults: known names, literal, right type."""
    checked = {}
    for name, value in params.items():
        if name not in defaults:
            raise unknown_parameter(name, defaults, where)
        checked[name] = check_value(name, value, defaults[name])
    return checked


def parse_cli_parameters(
    pairs: Iterable[tuple[str, str]], defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Turn `-p name value` pairs into checked Python values."""
    parsed = {}
    for name, text in pairs:
        if name not in defaults:
            raise unknown_parameter(name, defaults, where)
        parsed[name] = parse_cli_value(name, text, defaults[name])
    return parsed


def inject_parameters(nb: nbformat.NotebookNode, params: Mapping[str, Any], name: str) -> None:
    """Put an `injected-parameters` cell after the parameters cell (replacing an old one)."""
    from nbformat.v4 import new_code_cell

    nb.cells = [cell for cell in nb.cells if INJECTED_TAG not in _tags(cell)]
    index = parameters_cell_index(nb, name)
    lines = ["# Parameters injected by registry-tools"]
    lines += [f"{key} = {value!r}" for key, value in params.items()]
    cell = new_code_cell("\n".join(lines) + "\n")
    cell.metadata["tags"] = [INJECTED_TAG]
    if nb.nbformat_minor < 5:
        del cell["id"]  # cell ids arrived with nbformat 4.5
    nb.cells.insert(index + 1, cell)
