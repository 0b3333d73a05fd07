"""What a pack tells the user and the host beyond its files: after-apply guidance and build warnings."""

from __future__ import annotations

from driverpack import inbox
from driverpack.load import LoadedPack

RESTART_HOST = ("restartHost",)


def effective_after_apply(declared: tuple[str, ...] | None, carries_modules: bool) -> tuple[str, ...]:
    """update.xml's after-apply-guidance: the pack's own value, else restartHost for kernel modules.

    A new or upgraded module is only loaded at the next boot (the initrd is rebuilt for it), so a
    pack of modules that says nothing would leave the host running the old driver.
    """
    if declared is not None:
        return declared
    return RESTART_HOST if carries_modules else ()


def messages(loaded: LoadedPack, carries_modules: bool) -> list[str]:
    """'warning: ...' and 'note: ...' lines, printed once the pack is checked."""
    pack = loaded.pack
    lines = []
    if pack.target.module_dir == "extra" and (pack.drivers or carries_modules):
        lines.append(
            f"warning: {loaded.file}: target.module_dir: 'extra': dom0's depmod searches updates/ before extra/ "
            "('search updates extra built-in'), so a module of the same name in updates/ wins over this one; "
            "Citrix's rules for 8.2 packs ask for 'updates' (the default)"
        )
    if pack.pack.after_apply is None and carries_modules:
        lines.append(
            f"note: {loaded.file}: pack.after_apply: not set, so update.xml asks for restartHost (a new kernel module "
            "only takes effect after a reboot); set after_apply = [] to ask for nothing"
        )
    lines += [f"warning: {loaded.file}: {line}" for line in inbox.replaces_warnings(pack)]
    return lines
