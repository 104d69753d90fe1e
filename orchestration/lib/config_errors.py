"""Turning configuration mistakes into messages that name the file, the key and the fix."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ValidationError
from rapidfuzz import process


class ConfigProblems(ValueError):
    """A configuration that cannot be used; `problems` lists every reason, each naming file and key."""

    heading = "The configuration has problems:"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(self.heading + "\n" + "\n".join(f"- {p}" for p in problems))


def suggest(name: str, choices: Iterable[str], kind: str) -> str:
    """'Did you mean column 'amount'?' for a close match, else ''."""
    match = process.extractOne(name, list(choices), score_cutoff=60)
    return f"Did you mean {kind} '{match[0]}'?" if match else ""


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc` (walks nested models, lists and dicts)."""
    current = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            current = _nested_model(field.annotation)
            if current is None:
                return None
        # else: a list index or a dict key; `current` is already the model of the items
    return current


def _nested_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def pydantic_problems(where: str, exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One readable line per pydantic error: `<where>, key 'a.b': what was wrong. How to fix it.`"""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            allowed = list(owner.model_fields) if owner else []
            hint = suggest(str(loc[-1]), allowed, "key") if allowed else ""
            out.append(
                f"{where}, key '{key}': unknown key. {hint + ' ' if hint else ''}"
                f"Allowed keys here: {', '.join(allowed)}."
            )
        elif err["type"] == "missing":
            out.append(f"{where}, key '{key}': required but missing. Add it.")
        elif err["type"] == "string_pattern_mismatch":
            out.append(
                f"{where}, key '{key}': {err['input']!r} is not a valid name. Use lower-case letters, "
                "digits and underscores, starting with a letter."
            )
        elif err["type"] == "literal_error":
            out.append(f"{where}, key '{key}': {err['input']!r} is not allowed. {err['msg']}.")
        else:
            out.append(f"{where}, key '{key}': {err['msg']} (got {err.get('input')!r}).")
    return out
