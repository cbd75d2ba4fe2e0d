"""The package's version, in a module of its own: everything may import it, while the
package root (``kafkacompat/__init__.py``) re-exports the public API from the top layer."""

__version__ = "0.1.0"
