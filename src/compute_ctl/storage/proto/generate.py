"""Regenerate the Python modules of `page_service.proto` (`make proto` calls this).

The modules are committed so that compute_ctl needs no protoc at run time; this is the one
command that produces them, so a test can regenerate into a scratch directory and compare.
protoc runs with the `src` directory as its include root: the file is then known as
`compute_ctl/storage/proto/page_service.proto`, and the generated `_pb2_grpc` module imports
its sibling as `compute_ctl.storage.proto.page_service_pb2` with no editing of the output.

Usage: `python -m compute_ctl.storage.proto.generate [OUT_ROOT]` (default: the `src`
directory this package lives in, i.e. regenerate in place).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
SRC_ROOT = PROTO_DIR.parents[2]
PROTO_FILE = PROTO_DIR.relative_to(SRC_ROOT) / "page_service.proto"
GENERATED = ("page_service_pb2.py", "page_service_pb2.pyi", "page_service_pb2_grpc.py")


def protoc_args(out_root: Path) -> list[str]:
    """The protoc command line (without the program name) writing under `out_root`."""
    return [
        f"-I{SRC_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        PROTO_FILE.as_posix(),
    ]


def generate(out_root: Path) -> list[Path]:
    """Run `python -m grpc_tools.protoc` (which adds its bundled well-known types, such as
    `google/protobuf/timestamp.proto`, to the include path) and return the files made.

    Paths under `out_root` mirror the package: `out_root/compute_ctl/storage/proto/...`.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "grpc_tools.protoc", *protoc_args(out_root)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"protoc failed with status {result.returncode} for {PROTO_FILE}: "
            f"{result.stderr.strip()}"
        )
    target = out_root / PROTO_FILE.parent
    return [target / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_root = Path(args[0]) if args else SRC_ROOT
    for path in generate(out_root):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
