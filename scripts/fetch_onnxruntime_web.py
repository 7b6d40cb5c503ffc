"""Fetch onnxruntime-web for in-browser sampling (run by `make install`; stdlib only).

`npm pack` downloads the pinned version from the npm registry; its sha512 must equal the
one pinned here (the registry's own integrity string) before anything is unpacked.  Only
the three files the studio's pages use are kept, in web/static/vendor/onnxruntime-web/
(ignored by git: the .wasm alone is 14.8 MB).  Nothing is fetched at run time, never from
a CDN.  Run again with a new VERSION and INTEGRITY to upgrade.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
TARGET = Path(__file__).resolve().parent.parent / "web" / "static" / "vendor" / "onnxruntime-web"
STAMP = "VERSION.json"


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def present() -> bool:
    stamp = TARGET / STAMP
    if not stamp.is_file() or not all((TARGET / name).is_file() for name in FILES):
        return False
    return json.loads(stamp.read_text()).get("version") == VERSION


def main() -> int:
    if present():
        print(f"onnxruntime-web {VERSION} present in {TARGET}")
        return 0
    if shutil.which("npm") is None:
        print("error: npm not found: install Debian's nodejs and npm (make install does)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        done = subprocess.run(
            ["npm", "pack", f"onnxruntime-web@{VERSION}", "--silent", "--pack-destination", str(work)],
            cwd=work,
            capture_output=True,
            text=True,
        )
        tarballs = list(work.glob("onnxruntime-web-*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            message = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no tarball"]
            print(
                f"error: npm pack onnxruntime-web@{VERSION} failed ({message[0]}): check the network", file=sys.stderr
            )
            return 1
        found = integrity(tarballs[0])
        if found != INTEGRITY:
            print(f"error: onnxruntime-web {VERSION} checksum mismatch ({found}): refusing to unpack", file=sys.stderr)
            return 1
        staging = work / "files"
        staging.mkdir()
        with tarfile.open(tarballs[0]) as archive:
            for name in FILES:
                member = archive.getmember(f"package/dist/{name}")
                source = archive.extractfile(member)
                if source is None:
                    print(f"error: {name} missing from the onnxruntime-web tarball", file=sys.stderr)
                    return 1
                (staging / name).write_bytes(source.read())
        record = {"version": VERSION, "integrity": INTEGRITY, "files": {n: integrity(staging / n) for n in FILES}}
        (staging / STAMP).write_text(json.dumps(record, indent=1) + "\n")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, TARGET)
    print(f"onnxruntime-web {VERSION} fetched into {TARGET} (sha512 checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
