"""System programs some tests drive (Debian packages), which pip cannot install."""

import os
import shutil

import pytest


def require(program: str, package: str) -> str:
    """The program's path. Missing: a failure in CI, which must run every test; a skip elsewhere."""
    path = shutil.which(program)
    if path:
        return path
    message = f"needs `{program}`: apt-get install {package} (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
