"""The plugin system: hook specs, which entry points load (settings), discovery, the registry, plugin
config directories on Hydra's search path, and the listing (``python -m runner.plugins``)."""
