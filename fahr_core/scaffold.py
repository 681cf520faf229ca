"""``fahr init``: render a cookiecutter template into a new project folder.

Templates come from the ``templates`` hook (the core contributes the built-in ``model``,
``notebook`` and ``driver``, shipped inside the wheel as ``fahr_core/templates``), or are any
local path or git URL cookiecutter accepts.

Rendering happens in two phases so that invalid input fails before anything is written: the
questions are asked (or their defaults taken) and the answers checked first; then the template is
rendered into a staging folder beside the target and moved into place only when complete.
cookiecutter is imported only here, and only when a command needs it.
"""

from __future__ import annotations

import json
import keyword
import os
import posixpath
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

# The core contributes the built-in templates as a plugin (defaults); scaffold only renders them.
from fahr_core.defaults import builtin_dir, builtin_templates  # noqa: F401
from fahr_core.errors import PluginError, UsageError
from fahr_core.names import image_reference_problem
# Template lives in fahr_core.values; it stays importable from here.
from fahr_core.values import Template

DEFAULT_TEMPLATE = "model"
_DRIVER_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")
# A Docker repository path component (fahr_core.names): lowercase alphanumerics and separators.
_DOCKER_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")


def available_templates(pm=None) -> dict[str, Template]:
    """Every template the installed plugins contribute, by name (two with one name is an error)."""
    from fahr_core import plugins, ui

    # A broken plugin is reported and left out: it must not keep the built-in templates away.
    pm = pm or plugins.all_plugins_manager(on_error=lambda exc: ui.warn(str(exc)))
    found: dict[str, Template] = {}
    for impl in pm.hook.templates.get_hookimpls():
        contributed = impl.function() or []
        for template in contributed:
            template = replace(template, source=template.source or pm.get_name(impl.plugin) or "")
            other = found.get(template.name)
            if other is not None:
                raise PluginError(
                    f"template {template.name!r} is contributed twice, by {other.source} and "
                    f"{template.source}; uninstall one of them"
                )
            found[template.name] = template
    # The built-in templates first, in their own order; then the plugins' by name.
    core = [t for t in found.values() if t.source == "fahr-core-defaults"]
    rest = sorted((t for t in found.values() if t.source != "fahr-core-defaults"), key=lambda t: t.name)
    return {t.name: t for t in core + rest}


def _looks_like_url(value: str) -> bool:
    return bool(re.match(r"^((git|hg)\+)?(git|ssh|file|https?)://|^\w+@[\w.]+:|^(gh|gl|bb):", value))


def resolve_template(value: str | None, templates: Mapping[str, Template] | None = None) -> Template:
    """``--template`` (a name, a local path or a git URL) as a :class:`Template`."""
    value = value or DEFAULT_TEMPLATE
    templates = available_templates() if templates is None else templates
    if value in templates:
        return templates[value]
    if _looks_like_url(value):
        return Template(value, "", value, source="url")
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "cookiecutter.json").is_file():
            raise UsageError(f"--template {value}: {path} holds no cookiecutter.json; it is not a template")
        return Template(path.name, "", str(path.resolve()), source="path")
    choices = ", ".join(templates) or "(none)"
    raise UsageError(
        f"--template {value!r} is not a template name, a folder or a git URL. Choose one of: {choices} "
        "(see 'fahr templates')"
    )


def parse_settings(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` options as a dict.

    The values are data: ``fahr init`` never renders them as templates. They must be text: bytes
    that are not UTF-8 reach Python as lone surrogates, which no file can be written with.
    """
    from fahr_core.config import parse_pairs

    settings = parse_pairs(items, "--set")
    for key, value in settings.items():
        for part in (key, value):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"--set {_printable(key)}=…: not valid UTF-8 text; pass the value as UTF-8"
                ) from None
    return settings


def _printable(text: str) -> str:
    """``text`` safe to print whatever it holds (invalid UTF-8 shows as \\x escapes)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def validate_answers(answers: Mapping[str, Any]) -> None:
    """Check the answers of any template that uses fahr's variable names.

    ``project_slug`` must be a Docker repository name, ``package_name`` a Python package name,
    ``driver_name`` a lowercase identifier, ``base_image`` an image reference. The templates'
    ``hooks/pre_gen_project.py`` call this too, so rendering them with plain cookiecutter checks
    the same things.
    """
    for key, value in answers.items():
        if isinstance(value, str):
            bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t"), None)
            if bad is not None:
                raise UsageError(
                    f"answer {key}: holds the character U+{ord(bad):04X}; use text (newlines and tabs are fine)"
                )
    source = answers.get("project_name") or answers.get("driver_name") or ""
    slug = answers.get("project_slug")
    if slug is not None and (not _DOCKER_COMPONENT.match(str(slug)) or len(str(slug)) > 128):
        raise UsageError(
            f"project name {source!r} makes no valid Docker repository name (got {slug!r}); "
            "use letters and digits, separated by '-', '_' or '.'"
        )
    package = answers.get("package_name")
    if package is not None and (not str(package).isidentifier() or keyword.iskeyword(str(package))):
        raise UsageError(
            f"project name {source!r} makes no valid Python package name (got {package!r}); "
            "start it with a letter and use letters, digits and '_'"
        )
    driver = answers.get("driver_name")
    if driver is not None and not _DRIVER_NAME.match(str(driver)):
        raise UsageError(
            f"driver name {driver!r} is not valid: lowercase letters, digits and '_', starting with a letter"
        )
    base = answers.get("base_image")
    # The templates write it into a Dockerfile's FROM line: the check of every base image.
    if base is not None and image_reference_problem(str(base)):
        raise UsageError(f"base image {base!r} is not an image reference (e.g. python:3.11-slim)")


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a folder a project cannot go to (the same rules as a fetch target), whose name the
    filesystem cannot hold, or whose name makes no model image tag: `fahr fit DIR/train.py` tags
    its image after the folder."""
    from fahr_core import extract, names

    target = Path(target).absolute()
    try:
        str(target).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{_printable(str(target))}: the folder name is not valid UTF-8; choose another name") from None
    existing = target.parent
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in target.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(
                f"cannot create a folder named {part[:40]}… ({len(os.fsencode(part))} bytes): "
                f"names here are at most {name_max} bytes; choose a shorter name"
            )
    try:
        extract.check_target(target, overwrite)
    except OSError as exc:  # e.g. a path the kernel refuses to look at
        raise UsageError(f"cannot create {target}: {exc.strerror or exc}; choose another folder") from None
    names.model_image_tag(target / "train.py")


def _project_dir_name(repo_dir: Path) -> str:
    dirs = [p.name for p in repo_dir.iterdir() if p.is_dir() and "cookiecutter" in p.name and "{{" in p.name]
    if len(dirs) != 1:
        raise UsageError(f"template {repo_dir} must hold exactly one '{{{{cookiecutter.…}}}}' folder, found {len(dirs)}")
    return dirs[0]


@dataclass(frozen=True)
class InitResult:
    target: Path
    template: Template
    answers: Mapping[str, Any]
    files: list[str]


def init(
    directory: Path | None,
    template: str | None = None,
    *,
    no_input: bool = False,
    settings: Mapping[str, str] | None = None,
    overwrite: bool = False,
    templates: Mapping[str, Template] | None = None,
) -> InitResult:
    """Render ``template`` into ``directory`` (default: ``./<project_slug>``).

    The ``settings`` (``--set``) are data: cookiecutter renders every string of a template's
    ``cookiecutter.json`` as Jinja, so it would evaluate a ``{{ … }}`` in an answer. fahr asks
    the questions so that no answer is ever parsed (see :func:`_ask`), then renders the files once
    with the final answers (cookiecutter's ``generate_files``: ``cookiecutter()`` would take the
    answers as defaults and render them again).
    """
    settings = dict(settings or {})
    chosen = resolve_template(template, templates)
    target = Path(directory).absolute() if directory is not None else None
    if target is not None:
        check_target(target, overwrite)

    # cookiecutter writes each hook, rendered, to a temporary file it never removes (and copies
    # a template with a pre-prompt hook to a temporary folder): all of them go to a private
    # folder, removed at the end, whatever happens.
    with _private_tempdir():
        return _init(target, chosen, no_input=no_input, settings=settings, overwrite=overwrite)


def _init(target: Path | None, chosen: Template, *, no_input: bool, settings: dict[str, str],
          overwrite: bool) -> InitResult:
    from cookiecutter import exceptions as cc_errors
    from cookiecutter.config import get_user_config
    from cookiecutter.generate import generate_context, generate_files
    from cookiecutter.hooks import run_pre_prompt_hook
    from cookiecutter.repository import determine_repo_dir
    from jinja2 import TemplateError

    import logging
    import subprocess

    # cookiecutter logs a failed git clone with its traceback: fahr says it in one line instead.
    logging.getLogger("cookiecutter").setLevel(logging.CRITICAL)
    try:
        user_config = get_user_config()
        repo, cleanup = determine_repo_dir(
            template=chosen.location, abbreviations=user_config["abbreviations"],
            clone_to_dir=user_config["cookiecutters_dir"], checkout=None, no_input=no_input,
            directory=chosen.directory,
        )
    except subprocess.CalledProcessError as exc:
        output = exc.output.decode("utf-8", "replace") if isinstance(exc.output, bytes) else str(exc.output or "")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        why = lines[-1] if lines else f"git exited with {exc.returncode}"
        raise UsageError(f"template {chosen.location}: cannot fetch it ({why}); check the URL") from exc
    except (cc_errors.CookiecutterException, OSError) as exc:
        raise UsageError(f"template {chosen.location}: {_one_line(exc)}") from exc
    base_dir = Path(repo)
    made: list[Path] = []
    try:
        try:
            declared = json.loads((base_dir / "cookiecutter.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise UsageError(f"template {chosen.location}: cookiecutter.json is unreadable ({_one_line(exc)})") from exc
        if not isinstance(declared, dict):
            raise UsageError(f"template {chosen.location}: cookiecutter.json must hold a JSON object")
        unknown = sorted(set(settings) - set(declared))
        if unknown:
            public = ", ".join(k for k in declared if not k.startswith("_"))
            raise UsageError(f"--set {unknown[0]}: template {chosen.name} has no such variable; it has: {public}")
        if target is not None and "project_name" in declared and "project_name" not in settings:
            settings["project_name"] = target.name  # `fahr init iris-model` names the project
            if "project_slug" in declared and "project_slug" not in settings and _DOCKER_COMPONENT.match(target.name):
                settings["project_slug"] = target.name  # the folder's name is the model tag's first part
        try:
            # As cookiecutter() does: a pre-prompt hook works on a copy (in the private temp folder).
            repo_dir = Path(run_pre_prompt_hook(str(base_dir)))
            with _import_path(repo_dir):
                context = generate_context(
                    context_file=str(repo_dir / "cookiecutter.json"),
                    default_context=user_config["default_context"], extra_context=settings,
                )
                originals = {k: v for k, v in context["cookiecutter"].items() if not k.startswith("_")}
                answers = _ask(context, settings, no_input)
        except EOFError:
            raise UsageError(
                "the template's questions got no answer (standard input is closed); pass --no-input "
                "and answer with --set KEY=VALUE"
            ) from None
        except ValueError as exc:  # a --set value outside a choice variable's options
            raise UsageError(f"--set: {_one_line(exc)}") from exc
        except cc_errors.FailedHookException as exc:
            raise UsageError(f"template {chosen.name}: its pre-prompt hook failed: {_one_line(exc)}") from exc
        except (cc_errors.CookiecutterException, TemplateError) as exc:
            raise UsageError(f"template {chosen.name}: {_one_line(exc)}") from exc
        validate_answers(answers)

        from cookiecutter.environment import StrictEnvironment

        if target is None:
            try:
                name = StrictEnvironment(context=context).from_string(_project_dir_name(repo_dir)).render(
                    cookiecutter=answers)
            except TemplateError as exc:
                raise UsageError(f"template {chosen.name}: {_one_line(exc)}") from exc
            if not name or "/" in name or name in (".", ".."):
                raise UsageError(f"template {chosen.name}: its project folder's name renders as {name!r}")
            target = Path.cwd() / name
            check_target(target, overwrite)

        # What cookiecutter() adds to the context before it renders the files.
        variables = {**answers, "_template": chosen.location, "_repo_dir": str(repo_dir), "_checkout": None}
        made = _make_folders(target.parent)
        try:
            staging = Path(tempfile.mkdtemp(prefix=".fahr-init-", dir=target.parent))
        except OSError as exc:
            raise UsageError(f"cannot create {target}: {exc.strerror or exc}; choose another folder") from None
        try:
            variables["_output_dir"] = str(staging)
            render_context = {"cookiecutter": variables, "_cookiecutter": originals}
            _check_rendered_names(repo_dir, render_context, staging, chosen)
            with _import_path(repo_dir):
                rendered = generate_files(repo_dir=str(repo_dir), context=render_context, output_dir=str(staging),
                                          overwrite_if_exists=False, accept_hooks=True)
            remove_bytecode(Path(rendered))
            files = sorted(str(p.relative_to(rendered)) for p in Path(rendered).rglob("*") if p.is_file())
            _move_into(Path(rendered), target)
            made = []  # the project is in place: keep the folders it lives in
        except cc_errors.FailedHookException as exc:
            raise UsageError(f"template {chosen.name}: a hook failed: {_one_line(exc)}") from exc
        except (cc_errors.CookiecutterException, TemplateError) as exc:
            raise UsageError(f"template {chosen.name}: {_one_line(exc)}") from exc
        except OSError as exc:
            where = exc.filename or target
            raise UsageError(f"cannot create {target}: writing {where} failed ({exc.strerror or exc})") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        for folder in reversed(made):  # a failed init leaves no folder it made
            try:
                folder.rmdir()
            except OSError:
                break
        if cleanup:
            shutil.rmtree(base_dir, ignore_errors=True)
    return InitResult(target=target, template=chosen, answers=answers, files=files)


_RAW = "_fahr_set_"


def _ask(context: dict, settings: Mapping[str, str], no_input: bool) -> dict[str, Any]:
    """The template's questions answered: asked, or their defaults and the ``--set`` values.

    cookiecutter's ``prompt_for_config`` renders each string default as a Jinja template. A
    ``--set`` value stands in the context as that default, so it would be evaluated: instead,
    each one is kept in a private variable placed first (private variables are copied, never
    rendered), and its default becomes a reference to it, which renders to the value exactly.
    Variables derived from it (``project_slug`` from ``project_name``) derive as before.
    """
    from cookiecutter.prompt import prompt_for_config

    variables = context["cookiecutter"]
    env_vars = variables.get("_jinja2_env_vars") or {}  # a template may choose other delimiters
    start, end = env_vars.get("variable_start_string", "{{"), env_vars.get("variable_end_string", "}}")
    raw: dict[str, str] = {}
    for index, key in enumerate(settings):
        value = variables.get(key)
        # Choices were checked and reordered by cookiecutter, booleans converted, and private
        # variables ('_x') are never rendered: only plain strings need to be kept raw.
        if isinstance(value, str) and (not key.startswith("_") or key.startswith("__")):
            raw[f"{_RAW}{index}"] = value
            variables[key] = f"{start} cookiecutter.{_RAW}{index} {end}"
    context["cookiecutter"] = type(variables)([*raw.items(), *variables.items()])
    answers = dict(prompt_for_config(context, no_input))
    return {k: v for k, v in answers.items() if not k.startswith(_RAW)}


def _check_rendered_names(repo_dir: Path, context: dict, output_dir: Path, chosen: Template) -> None:
    """Refuse answers that would name a file outside the project, rendering each path as
    cookiecutter's ``generate_files`` does (which joins it to the project folder unchecked)."""
    from cookiecutter.find import find_template
    from cookiecutter.utils import create_env_with_context

    env = create_env_with_context(context)
    # cookiecutter renders the project folder's absolute path with the names of its subfolders:
    # Jinja in that path would be evaluated and send them elsewhere.
    delimiters = (env.variable_start_string, env.block_start_string, env.comment_start_string)
    if any(d in str(output_dir) for d in delimiters):
        raise UsageError(
            f"cannot render a template under {output_dir.parent}: its path holds "
            f"{' or '.join(repr(d) for d in delimiters)}; create the project elsewhere and move it"
        )
    template_dir = Path(find_template(str(repo_dir), env))
    project = env.from_string(template_dir.name).render(**context)
    if not project or "/" in project or project in (".", ".."):
        raise UsageError(f"template {chosen.name}: its project folder's name renders as {project!r}")
    for root, dirs, files in os.walk(template_dir):
        for name in dirs + files:
            relative = Path(root, name).relative_to(template_dir).as_posix()
            rendered = env.from_string(relative).render(**context)
            normal = posixpath.normpath(rendered)
            if posixpath.isabs(rendered) or normal == ".." or normal.startswith("../"):
                raise UsageError(
                    f"template {chosen.name}: the answers make the file name {rendered!r}, which leaves "
                    "the project folder; change the answers"
                )


class _import_path:
    """The template's folder on ``sys.path`` (its local Jinja extensions), as cookiecutter() does."""

    def __init__(self, folder: Path):
        self.folder = str(folder)

    def __enter__(self):
        import sys

        self.saved = list(sys.path)
        sys.path.append(self.folder)

    def __exit__(self, *exc):
        import sys

        sys.path[:] = self.saved


class _private_tempdir:
    """A temporary folder of fahr's for the duration of a render; removed afterwards.

    ``tempfile`` in this process and ``TMPDIR`` of the hooks it runs point into it.
    """

    def __enter__(self):
        try:
            self.path = tempfile.mkdtemp(prefix="fahr-init-")
        except OSError as exc:
            from fahr_core.errors import EnvironmentProblem

            raise EnvironmentProblem(
                f"cannot create a temporary folder in {tempfile.gettempdir()}: {exc.strerror or exc}; "
                "free space there or set TMPDIR to a writable folder"
            ) from None
        self.saved = (tempfile.tempdir, os.environ.get("TMPDIR"))
        tempfile.tempdir = self.path
        os.environ["TMPDIR"] = self.path
        return self.path

    def __exit__(self, *exc):
        tempfile.tempdir, saved_env = self.saved
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(self.path, ignore_errors=True)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the filesystem, say: no such folder
        return False


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not _exists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            for done in reversed(made):
                try:
                    done.rmdir()
                except OSError:
                    break
            raise UsageError(f"cannot create {path}: {exc.strerror or exc}; choose another folder") from None
        made.append(path)
    return made


def remove_bytecode(project: Path) -> None:
    """Remove ``__pycache__`` folders from a rendered project.

    pip byte-compiles every ``.py`` file of an installed wheel, the templates' too, so the
    installed templates hold ``__pycache__`` folders that cookiecutter would copy. The templates'
    post-generation hooks call this; so does ``fahr init``.
    """
    for cache in sorted(Path(project).rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)


def _move_into(rendered: Path, target: Path) -> None:
    if not target.exists():
        os.replace(rendered, target)
        return
    for entry in rendered.iterdir():  # --overwrite: the template's files replace same-named ones
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink() and entry.is_dir():
            _move_into(entry, dest)
            continue
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(entry, dest)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
