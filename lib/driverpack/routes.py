"""Build routes: which commands build a driver's modules, with which environment, in which folders.

The plan is pure frozen data made from the pack's driver table and the tarball's layout. The compile
step runs it (`resolve`), and the generated spec's %build renders the same plan as shell lines
(`render_build_script`), so an SRPM rebuilt by mock or Koji takes exactly the route `inv compile` took.

Words of a command are templates: literal text and placeholders ({kernel}, {kernel_build_dir}, {jobs},
{source_dir}), filled in with real values by the compile step and with rpm macros or shell variables
in the spec.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from driverpack.adapters.tarball import KbuildFolder, TarballLayout
    from driverpack.models import Driver


class Placeholder(enum.Enum):
    """A value known only when the build runs."""

    KERNEL = "kernel"  # the target's uname -r
    KERNEL_BUILD_DIR = "kernel_build_dir"  # its Kbuild tree (the unpacked one with [target] kernel_devel)
    JOBS = "jobs"  # parallel jobs for this driver
    SOURCE_DIR = "source_dir"  # the unpacked, patched source tree (its top directory)


PLACEHOLDER_NAMES = tuple(f"{{{p.value}}}" for p in Placeholder)

Part = str | Placeholder
Word = tuple[Part, ...]
"""One argv word or environment value: literal text and placeholders, in order."""

# Names vendor Makefiles, Intel's common.mk, Broadcom's Makefiles and DKMS read for the target kernel.
# Exported in the environment (never on make's command line), so a Makefile's own assignment still wins.
# KERNELRELEASE is left out on purpose: Kbuild sets it, and Makefiles test it to tell "inside Kbuild".
KERNEL_RELEASE_NAMES = ("KVER", "KVERSION", "KERNEL_VERSION", "BUILD_KERNEL", "kernelver")
KERNEL_BUILD_DIR_NAMES = (
    "KSRC",
    "KOBJ",
    "KDIR",
    "KERNELDIR",
    "KERNEL_DIR",
    "KERNEL_SRC",
    "KERNEL_SOURCE",
    "KERNEL_BUILD",
    "KLIB_BUILD",
    "kernel_source_dir",
)
# make ignores SHELL from the environment; on its command line it reaches every sub-make (MAKEFLAGS),
# so the recipes of the vendor Makefile and of Kbuild run with bash even where /bin/sh is dash.
MAKE_SHELL = "SHELL=/bin/bash"
_TEMPLATE_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]|[^{}]+")


def parse_template(text: str) -> Word:
    """Split text into literal parts and placeholders; '{{' and '}}' are literal braces."""
    parts: list[Part] = []
    known = {p.value: p for p in Placeholder}
    for match in _TEMPLATE_PART.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1) is not None:
            if match.group(1) not in known:
                raise ValueError(
                    f"unknown placeholder {token!r} in {text!r} (known: {', '.join(PLACEHOLDER_NAMES)}; "
                    "write a literal brace as '{{' or '}}')"
                )
            parts.append(known[match.group(1)])
        elif token in ("{", "}"):
            raise ValueError(f"unmatched {token!r} in {text!r} (write a literal brace as '{{' or '}}')")
        else:
            parts.append(token)
    return _merged(parts)


def _merged(parts: Sequence[Part]) -> Word:
    out: list[Part] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return tuple(out)


def literal(text: str) -> Word:
    return (text,) if text else ()


def in_tree(folder: str, *rest: str) -> Word:
    """{source_dir}/folder/rest..., the absolute path of a folder of the unpacked tree."""
    tail = "/".join(p for p in (folder, *rest) if p)
    return _merged([Placeholder.SOURCE_DIR, f"/{tail}" if tail else ""])


@dataclass(frozen=True)
class Command:
    """One process of a route: argv and its own environment, run in a folder of the unpacked tree."""

    what: str  # for messages: "prepare[0]", "build in src"
    folder: str  # relative to the source top; "" is the top
    argv: tuple[Word, ...]
    env: tuple[tuple[str, Word], ...]  # on top of the kernel environment; PWD included


@dataclass(frozen=True)
class FolderChoice:
    """Which Kbuild folders build the driver, and why (the pack's own list, or a choice among candidates)."""

    folders: tuple[str, ...]
    reason: str
    candidates: tuple[str, ...]  # every folder of the tarball with obj- lines
    is_guess: bool  # nothing in the tarball named the driver's modules: the shallowest was taken

    def describe(self) -> str:
        shown = ", ".join(_shown(c) for c in self.candidates)
        return f"driverpack built in {', '.join(_shown(f) for f in self.folders)} ({self.reason}; candidates: {shown})"


@dataclass(frozen=True)
class RoutePlan:
    """Everything a driver's build runs, in order, and where its modules are then found."""

    route: str  # "kbuild" | "vendor"
    prepare: tuple[Command, ...]
    build: tuple[Command, ...]
    module_folders: tuple[str, ...]
    choice: FolderChoice
    env: tuple[tuple[str, Word], ...]  # exported for every command: the target kernel under every usual name

    @property
    def commands(self) -> tuple[Command, ...]:
        return self.prepare + self.build


def kernel_env() -> tuple[tuple[str, Word], ...]:
    release = tuple((name, (Placeholder.KERNEL,)) for name in KERNEL_RELEASE_NAMES)
    build_dir = tuple((name, (Placeholder.KERNEL_BUILD_DIR,)) for name in KERNEL_BUILD_DIR_NAMES)
    return release + build_dir


def _shown(folder: str) -> str:
    return f"{folder}/" if folder else "the top directory"


def _normal(name: str) -> str:
    return name.replace("-", "_").lower()


def _names_match(driver: str, module: str) -> bool:
    """Module acme_nic for driver acme-nic; module qede for driver qlogic-qede (a '-'/'_' separated token)."""
    driver, module = _normal(driver), _normal(module)
    return module == driver or module in driver.split("_")


def choose_folders(driver: Driver, layout: TarballLayout) -> FolderChoice:
    """The pack's module_folders, else the folder whose obj- lines name the driver's module."""
    from driverpack.adapters.tarball import modules_built_from

    candidates = tuple(f.path for f in layout.folders)
    if driver.module_folders:
        return FolderChoice(driver.module_folders, "module_folders in the pack", candidates, is_guess=False)
    by_path = {f.path: f for f in layout.folders}
    if not layout.folders:  # a vendor Makefile without obj- lines: its own folder is the only one known
        return FolderChoice((layout.build_dir,), "the tarball's build folder", candidates, is_guess=False)

    def own(folder: KbuildFolder) -> bool:
        return any(_names_match(driver.name, m) for m in folder.modules)

    def reached(folder: KbuildFolder) -> bool:
        return any(_names_match(driver.name, m) for m in modules_built_from(folder, layout.folders))

    for test, why in ((own, "its obj- lines build"), (reached, "its obj- subfolders build")):
        matching = [f.path for f in layout.folders if test(by_path[f.path])]
        if matching:
            # Shallowest first (layout order); a deeper match inside it is built by it anyway.
            names = sorted({m for f in layout.folders if f.path == matching[0] for m in f.modules})
            reason = f"{why} {', '.join(n + '.o' for n in names) or 'the module'}"
            return FolderChoice((matching[0],), reason, candidates, is_guess=False)
    first = layout.folders[0].path
    only = len(candidates) == 1
    reason = "the only folder with obj- lines" if only else "the shallowest folder with obj- lines"
    return FolderChoice((first,), reason, candidates, is_guess=not only)


def _program(word: str) -> str:
    """A prepare step's program: an interpreter by name, else a file of the tree, run by its path (never PATH)."""
    from driverpack.models import INTERPRETERS

    return word if word in INTERPRETERS else "./" + word.removeprefix("./")


def plan_route(driver: Driver, layout: TarballLayout) -> RoutePlan:
    """The commands that build `driver` from a tarball laid out as `layout`."""
    choice = choose_folders(driver, layout)
    prepare = tuple(
        Command(
            what=f"prepare[{i}]",
            folder=step.folder,
            argv=tuple(parse_template(_program(word) if j == 0 else word) for j, word in enumerate(step.run)),
            env=(("PWD", in_tree(step.folder)), *((k, parse_template(v)) for k, v in sorted(step.env.items()))),
        )
        for i, step in enumerate(driver.prepare)
    )
    make_args = tuple(parse_template(arg) for arg in driver.make_args)
    jobs = _merged(["-j", Placeholder.JOBS])
    build = []
    for i, folder in enumerate(choice.folders):
        env: list[tuple[str, Word]] = [("PWD", in_tree(folder))]
        earlier = choice.folders[:i]
        if earlier:
            # A later module uses symbols an earlier one exports: modpost reads their Module.symvers.
            symvers: list[Part] = []
            for j, previous in enumerate(earlier):
                symvers += [" "] if j else []
                symvers += in_tree(previous, "Module.symvers")
            env.append(("KBUILD_EXTRA_SYMBOLS", _merged(symvers)))
        # Each recipe's bash resets PWD to its own folder (so would dash), and Kbuild's recipes run in the
        # kernel tree: on make's command line, $(PWD) stays the module folder in every sub-make, as it is
        # for a Kbuild file run from a shell (DKMS, rpmbuild) where make runs simple recipes without one.
        pwd = _merged(["PWD=", *in_tree(folder)])
        if driver.build == "vendor":
            argv: list[Word] = [literal("make"), jobs]
            if driver.makefile:
                argv += [literal("-f"), literal(driver.makefile)]
            argv += [literal(MAKE_SHELL), pwd, *make_args, *(literal(t) for t in driver.targets)]
        else:
            argv = [
                literal("make"),
                jobs,
                literal("-C"),
                (Placeholder.KERNEL_BUILD_DIR,),
                _merged(["M=", *in_tree(folder)]),
                literal(MAKE_SHELL),
                pwd,
                *make_args,
                literal("modules"),
            ]
        build.append(Command(f"build in {_shown(folder)}", folder, tuple(argv), tuple(env)))
    return RoutePlan(
        route=driver.build,
        prepare=prepare,
        build=tuple(build),
        module_folders=choice.folders,
        choice=choice,
        env=kernel_env(),
    )


# running the plan (the compile step)


def resolve(word: Word, values: Mapping[Placeholder, str]) -> str:
    return "".join(part if isinstance(part, str) else values[part] for part in word)


def command_env(plan: RoutePlan, command: Command, values: Mapping[Placeholder, str]) -> dict[str, str]:
    """The environment a command runs with, beyond the usual one: the kernel names, PWD, its own."""
    return {name: resolve(word, values) for name, word in (*plan.env, *command.env)}


# rendering the plan (the spec's %build)

_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./:,+@=-]+")
_SHELL_VALUES = {
    Placeholder.KERNEL: '"%{kernel_version}"',
    Placeholder.KERNEL_BUILD_DIR: '"%{kernel_build_dir}"',
    Placeholder.JOBS: '"${driverpack_jobs}"',
    Placeholder.SOURCE_DIR: '"${driverpack_top}"',
}


def shell_word(word: Word, *, first: bool = False) -> str:
    """One shell word for a spec: literals quoted when needed and '%' escaped, placeholders as macros."""
    out = []
    for part in word:
        if isinstance(part, Placeholder):
            out.append(_SHELL_VALUES[part])
        elif _PLAIN_WORD.fullmatch(part) and not (first and "=" in part):
            out.append(part)
        else:
            out.append("'" + part.replace("%", "%%").replace("'", "'\\''") + "'")
    return "".join(out) or "''"


def render_build_script(plan: RoutePlan) -> str:
    """The shell lines of %build that run the plan, one command per line, each in a subshell."""
    lines = [
        'driverpack_top="$(pwd)"',
        "driverpack_jobs=\"$(printf '%%s\\n' %{?_smp_mflags} | sed -n 's/^-j\\([0-9][0-9]*\\)$/\\1/p' | tail -n 1)\"",
        ': "${driverpack_jobs:=1}"',
        "# The target kernel under the names vendor Makefiles and DKMS read.",
    ]
    lines += [f"export {name}={shell_word(word)}" for name, word in plan.env]
    for command in plan.commands:
        env = " ".join(f"{name}={shell_word(word)}" for name, word in command.env)
        argv = " ".join(shell_word(w, first=(i == 0)) for i, w in enumerate(command.argv))
        lines.append(f"# {command.what}")
        lines.append(f"(cd {shell_word(in_tree(command.folder))} && {env} {argv})")
    return "\n".join(lines)
