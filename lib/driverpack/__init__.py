"""driverpack: Linux drivers to Citrix Hypervisor 8.2 supplemental packs."""

__version__ = "0.1.0"
