"""The spec reader: macro expansion, tags, changelog entries and the sections a pack cannot express.

tests/data/specs/ holds three specs of real-world shapes (see its README); the inline specs
below isolate one rule each.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from driverpack.specread import ChangelogItem, expand, parse_spec

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"


def read(case: str) -> str:
    (spec,) = (SPECS / case).glob("*.spec")
    return spec.read_text()


# macros


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%{name}-%{version}.tar.gz", ("acme-1.2.tar.gz", True)),
        ("%name-%version", ("acme-1.2", True)),
        ("1%{?dist}", ("1", True)),
        ("%{?release}%{!?release:1}", ("1", True)),
        ("%{?flavour:-%{flavour}}x", ("x", True)),
        ("%{!?flavour:plain}", ("plain", True)),
        ("%{?vendor_label:%{vendor_label}-}e40x", ("acme-e40x", True)),
        ("%{expand:%{name}}", ("acme", True)),
        ("100%% sure", ("100% sure", True)),
        ("%{chain}", ("acme-1.2", True)),
        ("%(uname -r)", ("%(uname -r)", False)),
        ("%{unknown}", ("%{unknown}", False)),
        ("%{lua: print(1)}", ("%{lua: print(1)}", False)),
        ("%{name", ("%{name", False)),
        ("%{loop}", ("%{loop}", False)),
    ],
)
def test_expand(text: str, expected: tuple[str, bool]) -> None:
    macros = {
        "name": "acme",
        "version": "1.2",
        "vendor_label": "acme",
        "chain": "%{name}-%{version}",
        "loop": "%{loop}",
    }
    assert expand(text, macros) == expected


def test_a_macro_defined_inside_a_conditional_is_unknown() -> None:
    facts = parse_spec(
        "%if %undefined kernel_version\n%define kernel_version dummy\n%endif\n"
        "Name: acme\nVersion: 1.0\nSummary: for %{kernel_version}\n"
    )
    assert facts.summary is None
    assert facts.unexpanded == {"summary": "for %{kernel_version}"}


def test_release_refers_to_a_release_given_at_build_time() -> None:
    facts = parse_spec("Name: a\nVersion: 1\nRelease: %{?release}%{!?release:1}\n")
    assert facts.release == "1"


def test_define_with_continuation_lines_and_parameters() -> None:
    facts = parse_spec(
        "%define long first \\\n  second\n%define find() %(echo %1)\n"
        "Name: a\nVersion: 1\nSummary: %{find x}\nLicense: %{long}\n"
    )
    assert facts.summary is None
    assert facts.license == "first \n  second"


# the three real-world shapes


def test_ch82_driver_spec() -> None:
    facts = parse_spec(read("ch82-driver"))
    assert (facts.name, facts.version, facts.release) == ("acme-e40x", "3.4.7", "2")
    assert facts.summary == "Acme e40x device drivers"
    assert facts.license == "GPL"
    assert facts.source0 == "acme-e40x-3.4.7.tar.gz"
    assert facts.patches == (
        "fix-build-on-4.19.patch",
        "ptp-queue-fix.patch",
        "SOURCES/0001-compat-newer-kernels.patch",
    )
    # %{kernel_version} only has a value in the real build: not carried, said so.
    assert facts.description is None and "description" in facts.unexpanded
    assert [e.date for e in facts.changelog] == [
        dt.date(2024, 3, 5),
        dt.date(2023, 12, 4),
        dt.date(2019, 11, 1),
        dt.date(2017, 6, 28),
    ]
    assert facts.changelog[1] == ChangelogItem(
        dt.date(2023, 12, 4),
        "Jane Builder <jane.builder@example.com>",
        "XYZ-1201: Update to 3.4.7\n- Note: 3.4.5-3 went to the previous release only",
    )
    assert facts.changelog_problems == ()
    # The vendor script before Kbuild is what the pack cannot express; the install is standard.
    assert len(facts.custom_sections) == 1
    assert facts.custom_sections[0].startswith("%build: 'KSRC=")
    assert facts.not_carried == ("Requires: kernel-kabi = 4.19.19-8.0.30", "Provides: vendor-driver")


def test_vendor_tarball_spec() -> None:
    facts = parse_spec(read("vendor-tarball"))
    assert (facts.name, facts.version, facts.release) == ("acmegb", "6.1.2", "1")
    assert facts.source0 == "acmegb-6.1.2.tar.gz"
    assert facts.vendor == "Acme Corporation"
    assert facts.license == "GPLv2"
    assert facts.description == "This package contains the Acme(R) Gigabit Ethernet Linux Driver."
    assert facts.changelog == ()
    sections = [s.split(":", 1)[0] for s in facts.custom_sections]
    assert sections == [
        "%build",
        "%install",
        "%files -f file.list",
        "%post",
        "%preun",
        "%package -n acme_auxiliary",
        "%files -n acme_auxiliary -f aux.list",
    ]
    assert "make -C src clean" in facts.custom_sections[0]
    # %clean and %postun (depmod only) are what the generated spec does too.
    assert not any(s.startswith(("%clean", "%postun")) for s in facts.custom_sections)


def test_ddk_example_spec() -> None:
    facts = parse_spec(read("ddk-example"))
    assert (facts.name, facts.version, facts.release) == ("hello-world", "1.0", "1")
    assert facts.source0 == "hello-world-1.0.tar.gz"
    assert facts.custom_sections == ()
    assert facts.not_carried == ("Provides: vendor-driver",)
    assert facts.changelog == (
        ChangelogItem(
            dt.date(2019, 2, 10),
            "Sam Example <sam@example.com>",
            "Version 1.0: the example driver, with 100% less code",
        ),
        ChangelogItem(dt.date(2019, 1, 27), "Sam Example <sam@example.com>", "First example driver"),
    )
    (problem,) = facts.changelog_problems
    assert "2019-01-27 is a Sun, not a Sat" in problem


# the changelog


def test_changelog_entries_rpm_refuses_are_reported_not_dropped_silently() -> None:
    facts = parse_spec(
        "Name: a\nVersion: 1\n%changelog\n"
        "stray text\n"
        "* Mon Jan 32 2024 A <a@example.com> - 1-1\n- bad day\n"
        "* Mon Jan 01 2024\n- no author\n"
        "* 2024-01-01 A <a@example.com>\n- not rpm's date format\n"
        "* Tue Jan 02 2024 A <a@example.com>\n\n"
        "* Mon Jan 01 2024 B <b@example.com> 1-1\n- kept\n  continued\n"
    )
    assert facts.changelog == (ChangelogItem(dt.date(2024, 1, 1), "B <b@example.com>", "kept\ncontinued"),)
    problems = "\n".join(facts.changelog_problems)
    assert "stray text" in problems
    assert "'Mon Jan 32 2024' is not a date" in problems
    assert "no author" in problems
    assert "* 2024-01-01" in problems and "rpm refuses it" in problems
    assert "no text" in problems
    assert len(facts.changelog_problems) == 5


def test_author_without_email_and_with_a_version() -> None:
    facts = parse_spec("Name: a\nVersion: 1\n%changelog\n* Mon Jan 01 2024 Build Team - 1.0-1\n- x\n")
    assert facts.changelog[0].author == "Build Team"


# sections


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("%prep\n%setup -q\n%patch0 -p1\n", ""),
        ("%prep\n%setup -q\n%patch0 -p0\n", "%patch0 -p0"),
        ("%prep\n%setup -q\nsed -i s/a/b/ Makefile\n", "sed -i"),
        ("%build\ncd src\nmake -C /lib/modules/%{kv}/build M=$PWD modules\n", ""),
        ("%build\nmake -C src\n", "make -C src"),
        ("%install\nmake -C %{kdir} M=$PWD INSTALL_MOD_PATH=%{buildroot} modules_install\n", ""),
        ("%install\ninstall -m 644 %{SOURCE1} %{buildroot}/etc/modprobe.d/a.conf\n", "SOURCE1"),
        ("%files\n%defattr(-,root,root)\n/lib/modules/%{kv}/extra/a.ko\n", ""),
        ("%files\n/lib/firmware/a.bin\n", "/lib/firmware/a.bin"),
        ("%post\n/sbin/depmod -a\n", ""),
        ("%post -p /sbin/ldconfig\n", ""),
        ("%pre\necho hello\n", "%pre: runs 'echo hello'"),
        ("%check\nmake test\n", "%check: runs"),
        ("%clean\nrm -rf $RPM_BUILD_ROOT\n", ""),
        ("%package devel\nSummary: headers\n", "subpackage"),
    ],
)
def test_custom_sections(section: str, expected: str) -> None:
    facts = parse_spec("Name: a\nVersion: 1\n" + section)
    if expected:
        assert len(facts.custom_sections) == 1 and expected in facts.custom_sections[0], facts.custom_sections
    else:
        assert facts.custom_sections == ()


def test_tags_of_a_subpackage_are_not_the_main_package_s() -> None:
    facts = parse_spec("Name: a\nVersion: 1\nSummary: main\n%package tools\nSummary: tools\nVersion: 2\n")
    assert (facts.version, facts.summary) == ("1", "main")


def test_patches_keep_their_number_order() -> None:
    facts = parse_spec("Name: a\nVersion: 1\nPatch10: ten.patch\nPatch2: two.patch\nPatch: zero.patch\n")
    assert facts.patches == ("zero.patch", "two.patch", "ten.patch")
