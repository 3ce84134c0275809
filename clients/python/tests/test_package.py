"""The client as its users get it: run_tests.sh installs the package into a
virtual environment (install_venv.sh) and these tests check that what they
import is that installed package, stubs included — not this source tree."""
import importlib.util
import os
import sys

import pytest

import txcoord

SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

pytestmark = pytest.mark.skipif(not os.environ.get("TXCOORD_REQUIRE_INSTALLED"),
                                reason="run from the source tree (clients/python/run_tests.sh installs first)")


def test_the_installed_package_is_imported():
    assert sys.prefix != sys.base_prefix, "not in the virtual environment run_tests.sh made"
    where = os.path.dirname(os.path.abspath(txcoord.__file__))
    assert where.startswith(sys.prefix + os.sep), where
    assert not where.startswith(SOURCE + os.sep), f"imported from the source tree: {where}"


def test_the_stubs_are_inside_the_installed_package():
    for name in ("common", "session", "transaction", "admin"):
        spec = importlib.util.find_spec(f"txcoord.v1.{name}_pb2_grpc" if name != "common" else "txcoord.v1.common_pb2")
        assert spec is not None and spec.origin.startswith(sys.prefix + os.sep), (name, spec)
    # An installed package never regenerates them (there is no proto tree).
    from txcoord import _stubs
    assert not _stubs._IN_SOURCE_TREE
    assert not _stubs._stale()


def test_the_distribution_metadata():
    from importlib import metadata
    dist = metadata.distribution("txcoord")
    assert dist.version == "0.1.0"
    requires = " ".join(dist.requires or [])
    assert "grpcio" in requires and "protobuf" in requires
