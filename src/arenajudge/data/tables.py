"""Tables: a file on disk -> a raw frame of Python objects, with no schema checks.

CSV, JSON lines, one JSON list of objects, and parquet, each plain or compressed as
pandas infers from the extension (``.gz``, ``.bz2``, ``.zip``, ``.xz``, ``.zst``): every
reader, whole-file or in blocks, opens files with :func:`open_binary`. Every way a file
can fail to be a table is one :class:`DataError` naming the file (and the
line or column where there is one): bad bytes, bad JSON, hostile JSON (see
:mod:`arenajudge.safe_json`) and a column named twice, which pandas would otherwise
rename to ``name.1`` and JSON would drop silently.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, cast

import pandas as pd

from arenajudge import safe_json
from arenajudge.errors import ArenaJudgeError, ConfigError, DataError, MissingDependencyError

FORMATS = ("csv", "jsonl", "json", "parquet")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd"}
"""Compressions by extension, those pandas infers (``.tar`` archives aside)."""


def compression_of(path: str | Path) -> str | None:
    """The compression ``path``'s last extension names, or None for a plain file."""
    return COMPRESSIONS.get(Path(path).suffix.lower())


def detect_format(path: Path) -> str:
    """The file format implied by ``path``'s extension (a compression's is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    aliases = {
        "csv": "csv",
        "jsonl": "jsonl",
        "ndjson": "jsonl",
        "json": "json",
        "parquet": "parquet",
        "pq": "parquet",
    }
    if ext not in aliases:
        raise DataError(
            f"has an unknown extension {ext or '(none)'!r}; "
            f"pass --input-format with one of {', '.join(FORMATS)}",
            file=path,
        )
    return aliases[ext]


# --------------------------------------------------------------------------- tables
def _zip_member(path: Path, stack: ExitStack) -> IO[bytes]:
    archive = stack.enter_context(zipfile.ZipFile(path))
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    if len(names) != 1:  # pandas refuses these too: which file is the data?
        raise DataError(
            f"is a zip archive of {len(names)} files; it must hold exactly one data file", file=path
        )
    return stack.enter_context(archive.open(names[0]))


def _zstd_reader(path: Path, stack: ExitStack) -> IO[bytes]:
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError(
            "is zstd-compressed and reading it needs the zstandard package, which is not "
            "installed; install it with `pip install zstandard` or decompress the file",
            file=path,
        ) from None
    raw = stack.enter_context(path.open("rb"))
    return stack.enter_context(zstandard.ZstdDecompressor().stream_reader(raw))


@contextmanager
def open_binary(path: str | Path) -> Iterator[IO[bytes]]:
    """``path`` opened for reading its decompressed bytes (:data:`COMPRESSIONS`)."""
    path = Path(path)
    compression = compression_of(path)
    with ExitStack() as stack:
        if compression == "zip":
            yield _zip_member(path, stack)
        elif compression == "zstd":
            yield _zstd_reader(path, stack)
        elif compression == "gzip":
            yield stack.enter_context(cast(IO[bytes], gzip.open(path, "rb")))  # noqa: SIM115
        elif compression == "bz2":
            yield stack.enter_context(bz2.open(path, "rb"))
        elif compression == "xz":
            yield stack.enter_context(lzma.open(path, "rb"))
        else:
            yield stack.enter_context(path.open("rb"))


@contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOWrapper]:
    with open_binary(path) as raw:
        yield io.TextIOWrapper(raw, encoding="utf-8")


def decode_record_line(line: str, lineno: int, path: str | Path) -> dict:
    """One JSONL line as a row object; repeated keys are refused (JSON keeps the last)."""
    try:
        record = safe_json.loads(line, unique_keys=True)
    except safe_json.JSONProblem as exc:
        raise DataError(
            f"line {lineno} is {exc}; each line of a JSONL file must be one JSON object", file=path
        ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"line {lineno} is a JSON {type(record).__name__}, not an object with named columns",
            file=path,
        )
    return record


def _read_json_records(path: Path, fmt: str) -> pd.DataFrame:
    with _open_text(path) as handle:
        if fmt == "jsonl":
            return pd.DataFrame.from_records(
                [
                    decode_record_line(line, lineno, path)
                    for lineno, line in enumerate(handle, 1)
                    if line.strip()
                ]
            )
        text = handle.read()
    try:
        records = safe_json.loads(text, unique_keys=True)
    except safe_json.JSONProblem as exc:
        raise DataError(
            f"is {exc}; a .json file must hold one list of row objects", file=path
        ) from None
    if not isinstance(records, list):
        raise DataError("must hold a JSON list of row objects", file=path)
    for position, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(
                f"row {position} is a {type(record).__name__}, not an object with named columns",
                file=path,
            )
    return pd.DataFrame.from_records(records)


def check_csv_header(path: Path) -> None:
    """Refuse a CSV file that names a column twice: pandas renames the second "name.1",
    so the header is read as data to see it."""
    with open_binary(path) as source:
        header = (
            pd.read_csv(
                source, header=None, nrows=1, dtype=object, keep_default_na=False, encoding="utf-8"
            )
            .iloc[0]
            .tolist()
        )
    check_unique_columns(header, path)


def _read_csv(path: Path) -> pd.DataFrame:
    check_csv_header(path)
    with open_binary(path) as source:
        return pd.read_csv(source, dtype=object, keep_default_na=False, encoding="utf-8")


def check_unique_columns(columns: Any, path: str | Path) -> None:
    """Refuse a table whose header names a column twice: which one holds the data?
    Blank names (trailing commas in a CSV header) are unnamed columns, never read."""
    seen: set[str] = set()
    for name in map(str, columns):
        if name in seen and name.strip():
            raise DataError(
                "is named twice in the header; rename or drop one column", file=path, column=name
            )
        seen.add(name)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    if compression_of(path) is None:
        parquet = pq.ParquetFile(path)
    else:  # its footer needs random access, which a decompressing stream lacks
        with open_binary(path) as source:
            parquet = pq.ParquetFile(io.BytesIO(source.read()))
    check_unique_columns(parquet.schema_arrow.names, path)
    return parquet.read().to_pandas()


def check_data_path(path: str | Path, format: str | None = None) -> tuple[Path, str]:
    """``path`` and its format, once ``path`` is known to be a file of a known format.

    Raises
    ------
    DataError
        The file is missing or a directory; ConfigError for an unknown ``format``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("does not exist", file=path)
    if path.is_dir():
        raise DataError("is a directory; give a data file", file=path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return path, fmt


@contextmanager
def read_errors(path: str | Path, fmt: str) -> Iterator[None]:
    """Turn what pandas, pyarrow and the decoders raise on a bad file into one DataError
    naming ``path``; shared by the whole-file and the block readers."""
    try:
        yield
    except ArenaJudgeError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"is not valid UTF-8 text (bad byte at offset {exc.start} of the "
            "decoded stream); re-save it as UTF-8",
            file=path,
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError("is empty: it has no header and no rows", file=path) from None
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise DataError(
            f"is not a readable CSV file ({reason}); check its quoting", file=path
        ) from None
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot be read ({exc}); is it a complete {fmt} file?", file=path
        ) from None
    except Exception as exc:  # pyarrow raises its own types for corrupt parquet files
        raise DataError(
            f"cannot be read as {fmt} ({type(exc).__name__}: {exc})", file=path
        ) from None


def read_table(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """Read a file into a raw frame of Python objects, with no schema checks.

    Raises
    ------
    DataError
        The file is missing, unreadable, not UTF-8, or not of the given format.
    """
    path, fmt = check_data_path(path, format)
    with read_errors(path, fmt):
        if fmt == "csv":
            return _read_csv(path)
        if fmt == "parquet":
            return _read_parquet(path)
        return _read_json_records(path, fmt)
