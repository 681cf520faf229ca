"""Defect: writes neither ``resourceconfig.json`` nor ``inputdataconfig.json`` into /opt/ml."""

from fahr_brokendrivers import delegating_hooks, hookimpl

globals().update(delegating_hooks("broken-noconfig"))
_launch = launch  # noqa: F821 (set just above)


@hookimpl
def launch(spec, config):
    from fahr_core import contract

    add_bytes = contract._add_bytes

    def without_configs(tar, name, data, mode=0o644):
        if name.endswith(("/resourceconfig.json", "/inputdataconfig.json")):
            return
        add_bytes(tar, name, data, mode)

    contract._add_bytes = without_configs
    try:
        return _launch(spec, config)
    finally:
        contract._add_bytes = add_bytes
