"""inv new: a commented pack.toml with a fresh uuid."""

from __future__ import annotations

import uuid
from pathlib import Path

from driverpack.atomic import write_text
from driverpack.errors import PackError
from driverpack.models import is_label

TEMPLATE = """\
# driverpack pack file. Every key is explained in the README ("The pack file");
# packs/helloworld/pack.toml is a complete example. Check it with: inv check --pack {label}

[pack]
label = "{label}"
text = "{label} driver"          # shown on installation; one line
uuid = "{uuid}"   # keep it for every build of this pack
version = "1.0.0"                # PACK_VERSION
build = "1"                      # PACK_BUILD
vendor = "Example Corp"
# base_requires = "product-version = 8.2.1"
# after_apply = []               # default: ["restartHost"], since the pack carries kernel modules
# signing_key = "keys/RPM-GPG-KEY-example"

[target]
kernel = "4.19.0+1"              # Citrix Hypervisor 8.2; "auto": the one kernel installed here
# build_dir = "/lib/modules/4.19.0+1/build"
module_dir = "updates"           # Citrix's rules; "extra" loses to an in-box module of the same name

[[drivers]]
name = "{name}"
version = "1.0"                  # RPM_VERSION (no '-')
release = "1"                    # RPM_RELEASE
source = "{name}-1.0.tar.gz"     # put the tarball next to this file
summary = "{label} kernel module"
license = "GPL"
# replaces = "intel-i40e"        # to upgrade an in-box driver package of Citrix Hypervisor 8.2
patches = []
changelog = [
  {{ date = "2024-01-01", author = "Example Corp <drivers@example.com>", text = "First release" }},
]

# [drivers.data]                 # files from {name}-data-<version>/ next to this file
# version = "1.0"
# release = "1"
"""


def new_pack(root: Path, label: str) -> Path:
    if not is_label(label):
        raise PackError(
            [f"{label!r} is not a valid label: use letters, digits, '_' and '-' only"],
            hint="e.g. inv new acme-nic",
        )
    path = root / "packs" / label / "pack.toml"
    if path.exists():
        raise PackError([f"{path.relative_to(root)} already exists"], hint="pick another label or edit that file")
    name = label.replace("_", "-")
    write_text(path, TEMPLATE.format(label=label, uuid=uuid.uuid4(), name=name))
    return path
