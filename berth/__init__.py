"""berth: a container engine for Linux that the Docker ecosystem can drive unchanged.

Packages are layered (docs/ARCHITECTURE.md); an upper layer may import a lower one, never the
reverse: cli → api → engine → {build, distribution} → {image, network, runtime, shim} → linux.
This top-level package must stay import-free: the runtime's init and the shim import it.
"""

__version__ = "0.1.0"
