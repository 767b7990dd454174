"""Data files that ship inside the distribution, found with ``importlib.resources``.

A wheel installs them as files next to the code and an editable install maps the packages onto the
repository, so either way a package's resources are a folder on disk, which is what callers get.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from notify_core.exceptions import NotifyError


def package_dir(package: str) -> Path:
    """The folder holding ``package``'s files."""
    found = files(package)
    if not isinstance(found, Path):  # imported from a zip, say: not a layout this project installs
        raise NotifyError(f"package {package} is not a folder on disk ({found!r})")
    return found
