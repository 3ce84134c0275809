"""Build step of the txcoord package (metadata: pyproject.toml): the gRPC
stubs are generated from the repository's proto/ (or $TXCOORD_PROTO_DIR)
into txcoord/v1/ whenever setuptools runs this file — before it reads the
package list, which names txcoord.v1 — so the built package carries them
and never needs the proto tree again."""
import importlib.util
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
# txcoord/_stubs.py alone: importing the package would need the stubs.
_spec = importlib.util.spec_from_file_location("_txcoord_stubs", os.path.join(HERE, "txcoord", "_stubs.py"))
_stubs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_stubs)
_stubs.generate(force=True)

setup()
