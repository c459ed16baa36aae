"""Root conftest: intentionally thin. The vlmbench pytest plugin (vlmbench/plugin.py) is registered
through the `pytest11` entry point when the package is installed (`pip install -e .`)."""
