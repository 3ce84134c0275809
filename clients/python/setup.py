"""Build step of the txcoord package (metadata: pyproject.toml): the gRPC
stubs are generated from the repository's proto/ (or $TXCOORD_PROTO_DIR)
into txcoord/v1/ before the package's files are collected, so the built
package carries them and never needs the proto tree again."""
import importlib.util
import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithStubs(build_py):
    def run(self):
        here = os.path.dirname(os.path.abspath(__file__))
        # txcoord/_stubs.py alone: importing the package would need the stubs.
        spec = importlib.util.spec_from_file_location("_txcoord_stubs", os.path.join(here, "txcoord", "_stubs.py"))
        stubs = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stubs)
        stubs.generate(force=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
