"""Rendering email templates written by email teams: sandboxed, strict, autoescaped where it matters.

Layout (docs/email-templates.md has the details): a template is a folder under the templates root holding three
files, `subject.txt.j2`, `body.txt.j2` and `body.html.j2`. A variant is an optional sub-folder of the same
name that overrides any of the three (often only the subject); files it does not override come from the
template folder, and every file also sees the `variant` variable for small differences. Folders starting with
`_` (layouts, partials) are not templates but can be extended and included by path.

Safety, because templates are edited by people outside engineering and render contact data:

- Jinja's `ImmutableSandboxedEnvironment`: no attribute starting with `_`, no function internals, no mutating
  methods, so server-side template injection payloads (`''.__class__.__mro__…`, `cycler.__init__.__globals__`)
  stop with a `SecurityError`. `finalize` additionally refuses to print anything but plain values (a method, a
  template reference), and `*` / `**` are capped so one typo cannot allocate gigabytes.
- `StrictUndefined`: a missing variable fails the render, naming template, line and variable, rather than
  sending "Hi ," to a million people. Optional data is guarded in the template (`is defined`, `default`).
- HTML autoescaping for `.html.j2` files only: contact data like `<script>` or quotes arrives as text in the
  HTML part, while the text part and the subject stay literal. Data is never evaluated as a template: a name
  of `{{ 7*7 }}` is printed as it is.

Every failure is a `TemplateError` (an `InputError`, so the CLI exits with 2) with `template`, `line`,
`variable` and `kind` (`syntax`, `undefined`, `security`, `render`, `missing`, `block`) attributes. An undefined
variable names the closest existing one ("did you mean 'first_name'?").

For `email lint`, `check_message` reports every problem of a message instead of the first: each part is
rendered on its own, and a part that stops at an undefined variable is rendered again with a recording
`Undefined` that notes every undefined name (with its line) and carries on. `block_problems` finds a child
template's `{% block %}` that its layout does not define: Jinja silently drops it, so a misspelled
`{% block contnet %}` would otherwise send an empty body.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    ChainableUndefined,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from markupsafe import Markup

from ..sdk.errors import InputError
from .filters import FILTERS

PARTS = ("subject.txt.j2", "body.txt.j2", "body.html.j2")
MAX_SEQUENCE = 100_000  # longest string or list `*` may build
MAX_EXPONENT = 64
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict, Markup)
#: Whitespace and every line boundary `str.splitlines` knows; no-break spaces stay (`100\u00a0$`).
_LINE_SPACE = re.compile(r"[ \t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")
_UNDEFINED = re.compile(r"'([^']+)' is undefined")
_NO_ATTRIBUTE = re.compile(r"has no (?:attribute|element) '?([^']+?)'?$")


#: The undefined names a recording render found: (name, the object it was looked up on, template, line).
_FOUND: ContextVar[list[tuple[str, Any, str, int | None]] | None] = ContextVar("undefined_found", default=None)


def _template_position() -> tuple[str, int | None]:
    """The innermost template being executed and its line (the frames of compiled templates know both)."""
    frame = sys._getframe(2)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return str(template.name), template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return "", None


class _RecordingUndefined(ChainableUndefined):
    """An undefined value that notes where it was used (printed, tested, iterated) and renders as nothing."""

    __slots__ = ()

    def _record(self) -> None:
        found = _FOUND.get()
        if found is not None:
            name = self._undefined_name if self._undefined_name is not None else "?"
            found.append((name, self._undefined_obj, *_template_position()))

    def __str__(self) -> str:
        self._record()
        return ""

    def __html__(self) -> str:
        self._record()
        return ""

    def __bool__(self) -> bool:
        self._record()
        return False

    def __iter__(self) -> Iterator[Any]:
        self._record()
        return iter(())

    def __len__(self) -> int:
        self._record()
        return 0


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `name` (a typo's intended name), or None when none is close."""
    matches = difflib.get_close_matches(name, [c for c in candidates if isinstance(c, str)], n=1, cutoff=0.6)
    return matches[0] if matches else None


def packaged_templates() -> Path:
    """The email templates shipped in the wheel (`crm_activation.templates/email`)."""
    return Path(str(files("crm_activation.templates") / "email"))


class TemplateError(InputError):
    """A template cannot be rendered; the message names the template file, the line and the variable."""

    def __init__(
        self, message: str, *, template: str, line: int | None = None, variable: str | None = None, kind: str
    ) -> None:
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message}")
        self.detail = message
        self.template = template
        self.line = line
        self.variable = variable
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the keyword arguments (templates render in worker processes, see `composing.py`)."""
        return (_template_error, (self.detail, self.template, self.line, self.variable, self.kind))


def _template_error(message: str, template: str, line: int | None, variable: str | None, kind: str) -> TemplateError:
    return TemplateError(message, template=template, line=line, variable=variable, kind=kind)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """The three parts of one email for one contact."""

    subject: str
    text: str
    html: str


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".html"))


def _finalize(value: Any) -> Any:
    # Printing a method or an engine object would leak internals (addresses, class names) into an email.
    # An Undefined passes through: printing it raises the UndefinedError that names the variable.
    if isinstance(value, Undefined):
        return value
    if not isinstance(value, _PLAIN) or callable(value):
        raise SecurityError(f"only plain values can be printed, not a {type(value).__name__}")
    return value


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent above {MAX_EXPONENT}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > MAX_SEQUENCE:
                    raise SecurityError(f"sequence repetition above {MAX_SEQUENCE} items")
        return super().call_binop(context, operator, left, right)


class TemplateRenderer:
    """Renders the templates of one folder; build one per campaign and reuse it (templates compile once)."""

    def __init__(
        self,
        folder: str | Path | None = None,
        prepare: Callable[[ImmutableSandboxedEnvironment], None] | None = None,
        auto_reload: bool = False,
    ) -> None:
        """Create the sandboxed environment.

        Args:
            folder: the templates root; None for the packaged `templates/email`.
            prepare: called with the environment before any render, so a caller can add filters.
            auto_reload: re-read changed files (the preview server); campaign runs compile each file once.
        """
        self.folder = Path(folder) if folder is not None else packaged_templates()
        self.prepare = prepare
        if not self.folder.is_dir():
            raise InputError(f"email templates folder not found: {self.folder}")
        env = _Environment(
            loader=FileSystemLoader(str(self.folder)),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            finalize=_finalize,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=auto_reload,
        )
        for name in ("lipsum", "cycler", "joiner"):  # nothing a template needs; less surface
            env.globals.pop(name, None)
        env.filters.update(FILTERS)
        if prepare is not None:
            prepare(env)
        self.env = env
        self._recording: ImmutableSandboxedEnvironment | None = None

    # -- discovery --------------------------------------------------------------------------------------
    def templates(self) -> list[str]:
        """Template names: folders (not starting with `_`) that hold a subject file."""
        folders = (p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("_"))
        return sorted(p.name for p in folders if (p / PARTS[0]).is_file())

    def variants(self, template: str) -> list[str]:
        """Variant names of a template: its sub-folders holding at least one of the three parts."""
        base = self.folder / template
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and any((p / part).is_file() for part in PARTS))

    def part_name(self, template: str, variant: str | None, part: str) -> str:
        """The loader name of a part: the variant's override when it has one, else the template's file."""
        if variant and (self.folder / template / variant / part).is_file():
            return f"{template}/{variant}/{part}"
        return f"{template}/{part}"

    # -- rendering --------------------------------------------------------------------------------------
    def render_part(self, name: str, context: Mapping[str, Any]) -> str:
        """Render one file by loader name, turning every Jinja failure into a `TemplateError`."""
        try:
            return self.env.get_template(name).render(context)
        except TemplateNotFound as exc:
            raise TemplateError(f"template file not found: {exc.name}", template=name, kind="missing") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}", template=exc.name or name, line=exc.lineno, kind="syntax"
            ) from exc
        except UndefinedError as exc:
            found = self.undefined_variables(name, context)  # the same render, with the name's suggestion
            raise (found[0] if found else self._runtime_error(name, exc)) from exc
        except JinjaTemplateError as exc:
            raise self._runtime_error(name, exc) from exc
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            raise self._runtime_error(name, exc) from exc

    def render_message(self, template: str, variant: str | None, context: Mapping[str, Any]) -> RenderedMessage:
        """Render subject, text and HTML of a template (and variant) for one context.

        The subject is collapsed to one line: a header cannot carry line breaks, and a stray newline in a
        template or in contact data must not become a header injection.
        """
        if not (self.folder / template / PARTS[0]).is_file():
            raise TemplateError("no such template (folder with subject.txt.j2)", template=template, kind="missing")
        context = {**context, "template": template, "variant": variant or ""}
        subject, text, html = (self.render_part(self.part_name(template, variant, p), context) for p in PARTS)
        return self._message(template, variant, subject, text, html)

    def _message(self, template: str, variant: str | None, subject: str, text: str, html: str) -> RenderedMessage:
        subject = _LINE_SPACE.sub(" ", subject).strip()
        if not subject:
            raise TemplateError("the subject is empty", template=self.part_name(template, variant, PARTS[0]),
                                kind="render")
        return RenderedMessage(subject=subject, text=text, html=html)

    # -- checks for `email lint` ------------------------------------------------------------------------
    def check_message(
        self, template: str, variant: str | None, context: Mapping[str, Any]
    ) -> tuple[RenderedMessage | None, list[TemplateError]]:
        """Like `render_message`, but every problem of the three parts instead of the first.

        Returns the message when nothing failed, else None and the errors (every undefined variable of a part,
        each once, with its line; a syntax or security error stops only its own part).
        """
        if not (self.folder / template / PARTS[0]).is_file():
            missing = TemplateError("no such template (folder with subject.txt.j2)", template=template, kind="missing")
            return None, [missing]
        context = {**context, "template": template, "variant": variant or ""}
        parts: list[str] = []
        errors: list[TemplateError] = []
        for part in PARTS:
            name = self.part_name(template, variant, part)
            try:
                parts.append(self.render_part(name, context))
            except TemplateError as error:
                errors.extend((self.undefined_variables(name, context) or [error]) if error.kind == "undefined"
                              else [error])
        if errors:
            return None, errors
        try:
            return self._message(template, variant, *parts), []
        except TemplateError as error:
            return None, [error]

    def undefined_variables(self, name: str, context: Mapping[str, Any]) -> list[TemplateError]:
        """Every undefined variable one file (by loader name) uses with this context, in order, each once."""
        if self._recording is None:  # same sandbox, filters and loader; its own cache (templates bind their env)
            self._recording = self.env.overlay(undefined=_RecordingUndefined, cache_size=50)
        found: list[tuple[str, Any, str, int | None]] = []
        token = _FOUND.set(found)
        stopped: TemplateError | None = None
        try:
            self._recording.get_template(name).render(context)
        except UndefinedError as exc:  # arithmetic or a filter on an undefined value: it stops the render here
            stopped = self._runtime_error(name, exc)
        except Exception:  # lenient values can trip later code (a filter, a comparison); the record stands
            pass
        finally:
            _FOUND.reset(token)
        errors: list[TemplateError] = []
        seen: set[tuple[str, str, int | None]] = set()
        for variable, obj, template, line in found:
            if (variable, template, line) in seen:
                continue
            seen.add((variable, template, line))
            if obj is missing:
                names: Iterable[str] = [*context, "template", "variant", *self.env.globals]
                what = f"{variable!r} is undefined"
            else:
                names = obj.keys() if isinstance(obj, Mapping) else []
                what = f"{type(obj).__name__!r} object has no attribute {variable!r}"
            message = f"undefined variable {variable!r} ({what})"
            suggestion = closest(variable, names)
            if suggestion is not None and suggestion != variable:
                message += f"; did you mean {suggestion!r}?"
            source = _source_line(self.folder / template, line)
            if source:
                message = f"{message}\n    {line} | {source}"
            errors.append(TemplateError(message, template=template or name, line=line, variable=variable,
                                        kind="undefined"))
        if stopped is not None and (stopped.variable, stopped.template, stopped.line) not in seen:
            errors.append(stopped)
        return errors

    def block_problems(self, name: str) -> list[TemplateError]:
        """Blocks a child template fills that its layout (or the layout's own layout) does not define.

        Jinja renders only the parent's blocks, so such a block's content silently disappears. Only
        `{% extends "literal" %}` can be checked; syntax errors are left to the render.
        """
        try:
            tree = self.env.parse(self._source(name), name)
        except (TemplateNotFound, TemplateSyntaxError):
            return []
        extends = next(tree.find_all(nodes.Extends), None)
        if extends is None or not isinstance(extends.template, nodes.Const):
            return []
        layout = str(extends.template.value)
        defined = self._layout_blocks(layout, set())
        if defined is None:
            return []
        problems = []
        for block in _outer_blocks(tree):
            if block.name in defined:
                continue
            message = (f"block {block.name!r} is not defined by {layout} (which has: {', '.join(sorted(defined))}), "
                       "so its content is never shown")
            suggestion = closest(block.name, defined)
            if suggestion is not None:
                message += f"; did you mean {suggestion!r}?"
            problems.append(TemplateError(message, template=name, line=block.lineno, variable=block.name,
                                          kind="block"))
        return problems

    def _source(self, name: str) -> str:
        assert self.env.loader is not None
        return self.env.loader.get_source(self.env, name)[0]

    def _layout_blocks(self, name: str, visited: set[str]) -> set[str] | None:
        """Every block a layout defines, its own layouts' included; None when it cannot be read."""
        if name in visited:
            return set()
        visited.add(name)
        try:
            tree = self.env.parse(self._source(name), name)
        except (TemplateNotFound, TemplateSyntaxError):
            return None
        blocks = {block.name for block in tree.find_all(nodes.Block)}
        extends = next(tree.find_all(nodes.Extends), None)
        if extends is not None and isinstance(extends.template, nodes.Const):
            parent = self._layout_blocks(str(extends.template.value), visited)
            if parent is None:
                return None
            blocks |= parent
        return blocks

    def _runtime_error(self, name: str, exc: Exception) -> TemplateError:
        template, line = _template_frame(exc, self.folder) or (name, None)
        message = str(exc) or type(exc).__name__
        variable = None
        kind = "render"
        if isinstance(exc, SecurityError):
            kind = "security"
        elif isinstance(exc, UndefinedError):
            kind = "undefined"
            match = _UNDEFINED.search(message) or _NO_ATTRIBUTE.search(message)
            variable = match.group(1) if match else None
            message = f"undefined variable {variable!r} ({message})" if variable else message
        source = _source_line(self.folder / template, line)
        if source:
            message = f"{message}\n    {line} | {source}"
        return TemplateError(message, template=template, line=line, variable=variable, kind=kind)


def _outer_blocks(node: nodes.Node) -> Iterator[nodes.Block]:
    """The blocks of a template that are not inside another block (a block inside one is the child's own)."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Block):
            yield child
        else:
            yield from _outer_blocks(child)


def _template_frame(exc: BaseException, folder: Path) -> tuple[str, int] | None:
    """The innermost traceback frame that is template code (Jinja maps those frames to template lines)."""
    found = None
    root = str(folder.resolve())
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            path = Path(filename).resolve()
            name = str(path.relative_to(root)) if str(path).startswith(root) else path.name
            found = (name, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _source_line(path: Path, line: int | None) -> str:
    if not line:
        return ""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    return lines[line - 1].strip()[:160] if 0 < line <= len(lines) else ""
