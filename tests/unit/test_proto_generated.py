"""The committed generated code is exactly what the pinned grpcio-tools makes of the protos."""

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import __version__ as protobuf_version

PROTO = Path(__file__).resolve().parents[2] / "proto"


def test_generated_code_matches_protos(tmp_path):
    shutil.copytree(PROTO / "fleetvisor", tmp_path / "fleetvisor",
                    ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    protos = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "fleetvisor/v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=.",
                    "--pyi_out=.", *protos], cwd=tmp_path, check=True)
    generated = sorted(p for p in (tmp_path / "fleetvisor/v1").iterdir() if p.suffix in (".py", ".pyi"))
    assert generated
    for fresh in generated:
        committed = PROTO / "fleetvisor/v1" / fresh.name
        assert committed.exists(), f"{fresh.name} is not committed; run proto/generate.sh"
        assert committed.read_text() == fresh.read_text(), f"{fresh.name} is stale; run proto/generate.sh"


def test_generated_code_imports_with_pinned_runtime():
    from fleetvisor.v1 import agent_pb2, agent_pb2_grpc
    assert agent_pb2.ProcessInfo(name="x").name == "x"
    assert hasattr(agent_pb2_grpc, "AgentServiceStub")
    assert grpc.__version__ and protobuf_version
