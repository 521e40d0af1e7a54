"""Batch files: JSON Lines, CSV or plain text, read as a stream of numbered lines.

A batch file is read a line at a time in binary (never whole), each line decoded as UTF-8 on its
own, so a bad byte, an overlong line or a broken record is one ``LineProblem`` with its line
number, and the rest of the file is still read. Whole-file problems (a UTF-16 file, a CSV header
naming unknown parameters, a file over the size limit) raise ``InputError`` at once. Line
numbers are the file's own (1 is the first line; a CSV's header is line 1), so a job's
``line`` points at the line a person edits; blank lines take their number and make no job.

Formats:
- ``jsonl``: one JSON object of request parameters per line.
- ``csv``: a header row naming parameters, then one row per job; an empty cell means "not
  given" (the ``--set`` default, else the model's).
- ``text``: one prompt per line, as is.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from producer.enqueueing import BatchLine, LineProblem, unknown_parameter
from shared.errors import InputError
from shared.request_model import parameter_names

FORMATS = ("jsonl", "csv", "text")
FORMAT_OF_SUFFIX = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "text", ".text": "text",
}  # fmt: skip
SKIP_CHUNK_BYTES = 64 * 1024
WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16",
}  # fmt: skip
"""Byte order marks of encodings read as UTF-8 would garble (UTF-32 LE first: it starts
with UTF-16 LE's mark)."""

Entry = BatchLine | LineProblem


@dataclass(frozen=True)
class PhysicalLine:
    """One line of the file: its number, its text (with its line ending), or why it has none."""

    number: int
    text: str
    problem: str | None = None


def format_of(path: Path, given: str | None) -> str:
    """The format named by ``--format``, else by the file's extension."""
    if given is not None:
        if given not in FORMATS:
            raise InputError(f"unknown format {given!r}: use one of {', '.join(FORMATS)}")
        return given
    try:
        return FORMAT_OF_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise InputError(
            f"{path.name}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
            f"name it .jsonl, .csv or .txt, or pass --format {'|'.join(FORMATS)}"
        ) from None


class BatchFile:
    """One batch file; ``entries()`` reads it again each time it is called (two passes: check
    everything, then enqueue), and ``sha256`` is the digest of the first full read."""

    def __init__(
        self, path: Path, file_format: str | None, *, max_file_bytes: int, max_line_bytes: int
    ) -> None:
        self.path = path
        size = self._size()  # first: a pipe told to pass --format would then be refused
        self.format = format_of(path, file_format)
        self.max_line_bytes = max_line_bytes
        self.sha256 = ""
        self._checked: FileVersion | None = None
        if size > max_file_bytes:
            raise InputError(f"{path}: {size:,} bytes; the limit is {max_file_bytes:,} "
                             "(SEGQ_MAX_FILE_BYTES)")  # fmt: skip

    def _size(self) -> int:
        """The file's size; a pipe (``/dev/stdin``, ``<(...)``) is refused: the second pass
        would find it empty and enqueue nothing."""
        try:
            status = self.path.stat()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it ({exc.strerror})") from None
        if not stat.S_ISREG(status.st_mode):
            raise InputError(f"{self.path}: not a regular file (a pipe?); segq batch reads a "
                             "file twice, checking every line before it enqueues any: save "
                             "the lines to a file first")  # fmt: skip
        return status.st_size

    def entries(self) -> Iterator[Entry]:
        """Each line that makes a job (``BatchLine``, parameters not yet validated) or a
        ``LineProblem``, in file order. Every read sees the bytes the first one saw, or fails:
        the first pass's checks and digest (the batch id) must hold for what the second
        enqueues, so a file still being written, or changed between the passes, is refused."""
        parse = {"jsonl": jsonl_entries, "csv": csv_entries, "text": text_entries}[self.format]
        digest = hashlib.sha256()
        try:
            with self.path.open("rb") as stream:
                version = FileVersion.of(stream)
                if self._checked is not None and version != self._checked:
                    raise InputError(f"{self.path}: {CHANGED} since it was checked; nothing "
                                     "of it was enqueued: run segq batch again")  # fmt: skip
                bounded = BoundedStream(stream, version.size)
                for entry in parse(physical_lines(bounded, self.max_line_bytes, digest)):
                    # the second pass looks before each line: a line it read after a write
                    # must not be enqueued (the digest alone speaks only at the end)
                    if self._checked is not None and FileVersion.of(stream) != version:
                        raise self._changed_while_enqueued()
                    yield entry
                changed = FileVersion.of(stream) != version
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it ({exc.strerror})") from None
        if self._checked is None:
            if changed:
                raise InputError(f"{self.path}: {CHANGED} while it was checked (is it still "
                                 "being written?); nothing was enqueued")  # fmt: skip
            self._checked, self.sha256 = version, digest.hexdigest()
        elif changed or digest.hexdigest() != self.sha256:
            raise self._changed_while_enqueued()

    def _changed_while_enqueued(self) -> InputError:
        return InputError(f"{self.path}: {CHANGED} while its lines were enqueued (is it still "
                          "being written?); no line read after it was enqueued")  # fmt: skip


CHANGED = "the file changed"


@dataclass(frozen=True)
class FileVersion:
    """What tells one version of a file from the next: a write changes its size or
    modification time, an editor's save (a new file renamed over it) its inode."""

    device: int
    inode: int
    size: int
    modified_ns: int

    @classmethod
    def of(cls, stream: BinaryIO) -> FileVersion:
        status = os.fstat(stream.fileno())
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


class LineReader(Protocol):
    def readline(self, limit: int, /) -> bytes: ...


class BoundedStream:
    """A binary stream that ends after ``size`` bytes: lines appended while a pass reads the
    file are not read (the version check then refuses the file)."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.remaining = size

    def readline(self, limit: int) -> bytes:
        line = self.stream.readline(min(limit, self.remaining))
        self.remaining -= len(line)
        return line


def physical_lines(stream: LineReader, max_line_bytes: int, digest: Any) -> Iterator[PhysicalLine]:
    """The stream's lines, decoded one by one; a line longer than ``max_line_bytes`` is
    skipped (read in chunks, never held) and reported."""
    number = 0
    while raw := stream.readline(max_line_bytes + 1):
        number += 1
        digest.update(raw)
        cut_short = len(raw) > max_line_bytes and not raw.endswith(b"\n")
        if number == 1:  # after the length check: without its BOM, a cut line looks whole
            raw = without_utf8_bom(raw)
        if cut_short:
            skip_rest_of_line(stream, digest)
            yield PhysicalLine(number, "\n", f"longer than {max_line_bytes:,} bytes "
                                             "(SEGQ_MAX_LINE_BYTES)")  # fmt: skip
            continue
        try:
            yield PhysicalLine(number, raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            why = (f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
                   "line); save the file as UTF-8")  # fmt: skip
            yield PhysicalLine(number, raw.decode("utf-8", errors="replace"), why)


def without_utf8_bom(first_line: bytes) -> bytes:
    """The first line without a UTF-8 byte order mark; a UTF-16/32 file is refused whole."""
    for bom, encoding in WIDE_BOMS.items():
        if first_line.startswith(bom):
            raise InputError(f"the file is {encoding} (it starts with a {encoding} byte order "
                             "mark); save it as UTF-8")  # fmt: skip
    if looks_wide(first_line.rstrip(b"\r\n\x00")):
        raise InputError("the file looks like UTF-16 or UTF-32 without a byte order mark "
                         "(a NUL byte beside each character of its first line); save it as "
                         "UTF-8")  # fmt: skip
    return first_line.removeprefix(codecs.BOM_UTF8)


def looks_wide(text: bytes) -> bool:
    """Whether every other byte is NUL, as in ASCII text saved as UTF-16 (or UTF-32)."""
    return len(text) >= 2 and (not text[0::2].strip(b"\x00") or not text[1::2].strip(b"\x00"))


def skip_rest_of_line(stream: LineReader, digest: Any) -> None:
    while chunk := stream.readline(SKIP_CHUNK_BYTES):
        digest.update(chunk)
        if chunk.endswith(b"\n"):
            return


CR_LINE_ENDS = (
    "holds a carriage return inside the line: a file with old Mac line ends (CR "
    "only) would be one prompt; save it with LF or CRLF line ends"
)


def text_entries(lines: Iterator[PhysicalLine]) -> Iterator[Entry]:
    for line in lines:
        if line.problem:
            yield LineProblem(line.number, line.problem)
        elif "\r" in (prompt := line.text.rstrip("\r\n")):
            yield LineProblem(line.number, CR_LINE_ENDS)
        elif prompt.strip():
            yield BatchLine(line.number, {"prompt": prompt})


def jsonl_entries(lines: Iterator[PhysicalLine]) -> Iterator[Entry]:
    for line in lines:
        if line.problem:
            yield LineProblem(line.number, line.problem)
        elif line.text.strip():
            yield json_line(line.number, line.text.rstrip("\r\n"))


def json_line(number: int, text: str) -> Entry:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineProblem(number, f"not valid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return LineProblem(number, "not valid JSON here: nested too deeply")
    except ValueError:  # JSONDecodeError is caught above: only an integer too long is left
        return LineProblem(number, f"a number of more than {sys.get_int_max_str_digits():,} "
                                   "digits")  # fmt: skip
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}
        got = kind.get(type(value), "a number")
        return LineProblem(number, f"expected a JSON object of parameters, got {got}")
    return BatchLine(number, value)


def csv_entries(lines: Iterator[PhysicalLine]) -> Iterator[Entry]:
    """Rows after the header as parameters (empty cells left out); a row that spans lines (a
    quoted line break) is numbered by its first line."""
    header: list[str] | None = None
    for start, record in csv_records(lines):
        if isinstance(record, LineProblem):
            if header is None:  # else the first row would be read as the header
                raise InputError(f"line {start}: the CSV header cannot be read: {record.reason}")
            yield record
        elif header is None:
            header = csv_header(record, start) if any(cell.strip() for cell in record) else None
        elif any(cell.strip() for cell in record):
            yield csv_row(header, record, start)


def csv_records(lines: Iterator[PhysicalLine]) -> Iterator[tuple[int, list[str] | LineProblem]]:
    """Each CSV record with the number of its first line, or the problem that spoiled it.

    The reader is strict: left lenient, a stray quote (``"a cat,4``) opens a cell that swallows
    every following line up to the next quote or the end of the file, and thousands of jobs
    would silently become one prompt. Strict, that record is one problem naming its lines."""
    bad_lines: dict[int, str] = {}

    def texts() -> Iterator[str]:
        for line in lines:
            if line.problem:
                bad_lines[line.number] = line.problem
            yield line.text

    reader = csv.reader(texts(), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            bad_lines[start] = csv_problem(exc, start, reader.line_num)
        problems = [bad_lines.pop(n) for n in range(start, reader.line_num + 1) if n in bad_lines]
        yield start, LineProblem(start, problems[0]) if problems else row


def csv_problem(exc: csv.Error, start: int, end: int) -> str:
    if end <= start:
        return f"not valid CSV: {exc}"
    return (f"not valid CSV: {exc}, in a record that runs from here to line {end} (is a quote "
            "left open?); none of those lines was read as a job")  # fmt: skip


def csv_header(row: list[str], number: int) -> list[str]:
    """The parameter names of the header row; unknown, empty or repeated names refuse the
    file (every row would be wrong)."""
    names = [cell.strip() for cell in row]
    known = set(parameter_names())
    problems = []
    for column, name in enumerate(names, start=1):
        if not name:
            problems.append(f"line {number}: column {column} has no name")
        elif name not in known:
            problems.append(f"line {number}: column {column} {name!r}: {unknown_parameter(name)}")
        elif names.index(name) != column - 1:
            problems.append(f"line {number}: column {column} {name!r} repeats an earlier column")
    if problems:
        raise InputError("the CSV header must name request parameters", problems)
    return names


def csv_row(header: list[str], row: list[str], number: int) -> Entry:
    if len(row) > len(header):
        return LineProblem(number, f"{len(row)} cells, but the header names {len(header)} columns")
    cells = zip(header, row, strict=False)  # a short row leaves its last columns out
    return BatchLine(number, {name: cell for name, cell in cells if cell.strip()})
