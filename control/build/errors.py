"""What can go wrong while building a connector component."""

from __future__ import annotations


class ToolchainError(RuntimeError):
    """A guest toolchain is not installed where the builder looks for it."""

    def __init__(self, tool: str, package: str, searched: str) -> None:
        super().__init__(
            f"{tool} not found ({searched}); install it with `pip install {package}` "
            "in the environment that runs flowforge"
        )
        self.tool = tool
        self.package = package


class BuildError(RuntimeError):
    """The sources did not build into a valid connector component.

    `detail` holds the tool's own diagnostics (trimmed), which is what the author needs to
    fix the source.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(f"{message}\n{detail}" if detail else message)
        self.summary = message
        self.detail = detail
