"""The ``stepline`` command line: the one entry point that may reach the SDK, the gateway and the operator."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stepline")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
