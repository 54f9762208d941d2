"""CURVE key pairs for the cars (`rtctl keys OUTDIR --ids car0 car1 ...`).

Layout: OUTDIR/public/<id>.key (give every car the whole folder) and OUTDIR/secret/<id>.key_secret (copy to
that car only; mode 0600). A car's PUB socket is a CURVE server with its secret key; every peer's SUB socket
for it is a CURVE client that names the car's public key, so only the holder of that secret can feed the
socket, and a message whose id is not that car's is dropped as spoofed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from rtctl.v2v.config import check_id


@dataclass(frozen=True)
class KeyPaths:
    public: Path
    secret: Path


@dataclass(frozen=True)
class CarKeys:
    """One car's own pair (z85 bytes, as pyzmq takes them) and the folder of every car's public key."""

    public: bytes
    secret: bytes
    public_dir: Path

    def peer_key(self, peer: str) -> bytes:
        return _read(self.public_dir / f"{peer}.key", want_secret=False)[0]


def make_keys(out_dir: str | Path, ids: list[str], overwrite: bool = False) -> dict[str, KeyPaths]:
    """Create a key pair per id under out_dir; refuses to replace existing keys unless overwrite."""
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE; reinstall pyzmq from its wheels")
    ids = [check_id(i, "car id") for i in ids]
    if not ids:
        raise ValueError("give at least one id (--ids car0 car1 ...)")
    if len(set(ids)) != len(ids):
        raise ValueError(f"ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    out = Path(out_dir)
    public_dir, secret_dir = out / "public", out / "secret"
    existing = [i for i in ids if (public_dir / f"{i}.key").exists() or (secret_dir / f"{i}.key_secret").exists()]
    if existing and not overwrite:
        raise FileExistsError(f"keys already exist in {out} for {existing}; pass overwrite=True to replace them")
    public_dir.mkdir(parents=True, exist_ok=True)
    secret_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secret_dir, 0o700)
    paths = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for car in ids:
            pub, sec = zmq.auth.create_certificates(tmp, car)
            os.chmod(sec, 0o600)
            paths[car] = KeyPaths(Path(shutil.move(pub, public_dir / f"{car}.key")),
                                  Path(shutil.move(sec, secret_dir / f"{car}.key_secret")))
    return paths


def load_keys(keys_dir: str | Path, me: str) -> CarKeys:
    """Read this car's pair; a missing or broken file is an error naming it."""
    keys_dir = Path(keys_dir)
    public, secret = _read(keys_dir / "secret" / f"{me}.key_secret", want_secret=True)
    return CarKeys(public, secret, keys_dir / "public")


def _read(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise FileNotFoundError(f"V2V key file missing: {path} (make keys with `rtctl keys OUTDIR --ids ...`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as err:
        raise ValueError(f"V2V key file {path} is not a CURVE certificate: {err}") from None
    if want_secret and not secret:
        raise ValueError(f"V2V key file {path} has no secret key")
    return public, secret
