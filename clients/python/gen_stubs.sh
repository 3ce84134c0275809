#!/usr/bin/env bash
# Generates the gRPC/protobuf stubs for the txcoord Python client from
# proto/txcoord/v1/*.proto into clients/python/txcoord/v1/ (git-ignored),
# with Debian's grpc_tools (python3-grpc-tools) under /usr/bin/python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "."); from txcoord._stubs import generate; generate(force=True)'
