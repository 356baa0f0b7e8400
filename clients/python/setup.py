"""Generates the gRPC stubs from the repository's proto files when the package is built.

The generated modules go under ``empathy_client/_proto`` and their imports are made
relative to it, so the installed package does not claim a top-level ``empathy`` module.
"""

import os
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# clients/python -> the repository root, which holds proto/empathy/v1/*.proto.
PROTO_ROOT = Path(os.environ.get("EMPATHY_PROTO_ROOT", HERE.parent.parent / "proto"))
PROTOS = ["empathy/v1/common.proto", "empathy/v1/empathy.proto"]
PACKAGE = "empathy_client._proto"


def generate(out: Path) -> None:
    from grpc_tools import protoc  # a build requirement (pyproject.toml)
    import grpc_tools

    missing = [p for p in PROTOS if not (PROTO_ROOT / p).is_file()]
    if missing:
        raise SystemExit(
            f"empathy-client: {missing} not found under {PROTO_ROOT}; install from a "
            "checkout of the repository (pip install ./clients/python) or set "
            "EMPATHY_PROTO_ROOT to its proto/ directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("empathy-client: protoc failed on " + " ".join(PROTOS))
    for generated in out.rglob("*.py*"):
        text = generated.read_text()
        text = re.sub(r"^from empathy\.v1 import", f"from {PACKAGE}.empathy.v1 import", text, flags=re.M)
        generated.write_text(text)
    for package in [out, out / "empathy", out / "empathy" / "v1"]:
        (package / "__init__.py").touch()


class BuildWithStubs(build_py):
    def run(self):
        generate(Path(self.build_lib) / "empathy_client" / "_proto")
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
